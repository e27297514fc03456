//! TLS with certificates made by the test: a certificate authority and a
//! server certificate for localhost and 127.0.0.1. A client trusting that
//! CA gets answers; a plaintext client and a client trusting another CA
//! get none; `serve --tls-cert --tls-key` and the CLI's `--ca-cert` work
//! together with tokens.

mod common;

use annals::client::{Client, ClientOptions};
use annals::tls::TlsIdentity;
use common::TestServer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
const BINARY: &str = env!("CARGO_BIN_EXE_annals");

/// A CA, and a server certificate it signed: (CA PEM, server cert PEM, server key PEM).
fn certificates(ca_name: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "annals test server");
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    (ca.pem(), server_cert.pem(), server_key.serialize_pem())
}

async fn tls_server(cert: &str, key: &str) -> TestServer {
    let identity = TlsIdentity::from_pem(cert, key);
    TestServer::configured(true, move |config| config.tls = Some(identity)).await
}

async fn connect(server: &str, ca_cert: Option<&str>) -> Result<Client, String> {
    let options = ClientOptions {
        ca_cert: ca_cert.map(|pem| pem.as_bytes().to_vec()),
        ..ClientOptions::default()
    };
    timeout(WAIT, Client::connect_with(server, options))
        .await
        .expect("connects or fails in time")
        .map_err(|error| error.to_string())
}

/// Connects and asks one question; the error text if either fails.
async fn ask(server: &str, ca_cert: Option<&str>) -> Result<(), String> {
    let mut client = connect(server, ca_cert).await?;
    timeout(WAIT, client.entity("china", "1962-01-01", 0))
        .await
        .expect("answers or fails in time")
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_answers_and_others_none() {
    let (ca, cert, key) = certificates("annals test CA");
    let server = tls_server(&cert, &key).await;
    let port = server.server.local_addr().port();

    ask(&format!("https://127.0.0.1:{port}"), Some(&ca))
        .await
        .expect("TLS with the right CA");
    ask(&format!("127.0.0.1:{port}"), Some(&ca))
        .await
        .expect("a bare address with a CA certificate means TLS");

    // Plaintext HTTP/2 to a TLS port: no answer.
    let plaintext = ask(&format!("http://127.0.0.1:{port}"), None).await;
    assert!(plaintext.is_err(), "a plaintext client must not be served");

    // A CA the server's certificate does not chain to: refused.
    let (other_ca, _, _) = certificates("some other CA");
    let error = ask(&format!("https://127.0.0.1:{port}"), Some(&other_ca))
        .await
        .unwrap_err();
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error says why: {error}"
    );

    // A CA certificate with an http:// address is a mistake, said so.
    let error = connect(&format!("http://127.0.0.1:{port}"), Some(&ca))
        .await
        .unwrap_err();
    assert!(error.contains("https://"), "{error}");

    // The server still serves.
    ask(&format!("https://127.0.0.1:{port}"), Some(&ca))
        .await
        .expect("still serving");
    server.stop().await;
}

#[tokio::test]
async fn an_unusable_certificate_stops_the_server_from_starting() {
    let (_, cert, _) = certificates("annals test CA");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = annals::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.clone(),
        tls: Some(TlsIdentity::from_pem(cert, "not a key")),
        ..annals::server::Config::default()
    };
    let error = timeout(WAIT, annals::server::Server::start(&config))
        .await
        .unwrap()
        .err()
        .expect("refused");
    assert!(error.to_string().starts_with("tls: "), "{error}");
    assert!(!data_dir.exists(), "refused before opening the store");
}

/// Runs a client command, bounded in time: (success, stdout, stderr).
fn annals(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(BINARY)
        .args(args)
        .env_remove("ANNALS_TOKEN")
        .env_remove("ANNALS_CA_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("annals runs");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the client finishes in time")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_with_tls_and_tokens_answers_the_cli_with_ca_cert_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates("annals test CA");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &ca),
        write("cert.pem", &cert),
        write("key.pem", &key),
    );
    let tokens = write("tokens.txt", "tls-reader-token reader\n");
    let data_dir = dir.path().join("data");

    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .args([
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--auth-tokens",
            &tokens,
        ])
        .env("ANNALS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("annals serve starts");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(address) = line.strip_prefix("annals listening on ") {
                let _ = sender.send(address.to_string());
            }
        }
    });
    let address = receiver.recv_timeout(Duration::from_secs(60));
    let outcome = std::panic::catch_unwind(|| {
        let address = address.expect("the server says where it listens");
        let server = format!("https://{address}");
        let (ok, stdout, stderr) = annals(&[
            "entity",
            "china",
            "--server",
            &server,
            "--ca-cert",
            &ca,
            "--token",
            "tls-reader-token",
        ]);
        assert!(ok && stdout.contains("china"), "{stdout}{stderr}");
        let (ok, _, stderr) = annals(&["entity", "china", "--server", &server, "--ca-cert", &ca]);
        assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
        let (ok, _, stderr) = annals(&[
            "entity",
            "china",
            "--server",
            &format!("http://{address}"),
            "--token",
            "tls-reader-token",
        ]);
        assert!(!ok, "plaintext is refused: {stderr}");
    });
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(
        stopped.is_some_and(|status| status.success()),
        "the server stops cleanly on SIGTERM"
    );
}

//! The benchmark program, not the benchmark: its workload generator must
//! reproduce gen_workload.py byte for byte (checked against the md5 that
//! bench/WORKLOAD.md publishes), and `annals-bench --smoke` must run end to
//! end against a real server in seconds. Nothing here asserts a timing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_annals-bench");
const SERVER: &str = env!("CARGO_BIN_EXE_annals");

/// MD5 (RFC 1321), enough to check a published checksum without a crate.
fn md5(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for block in message.chunks(64) {
        let words: Vec<u32> = block
            .chunks(4)
            .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(words[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        for (slot, value) in state.iter_mut().zip([a, b, c, d]) {
            *slot = slot.wrapping_add(value);
        }
    }
    state
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn md5_is_md5() {
    assert_eq!(md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
}

/// Runs a command to completion within `limit`, killing it past that.
fn run_bounded(command: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the benchmark starts");
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so the child never blocks on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buffer).ok();
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buffer).ok();
        buffer
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SIGTERM first so the benchmark stops its server on the way out.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let status = child.wait().unwrap();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("{command:?} ran past {limit:?} ({status}); stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn generator_matches_the_published_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_bounded(
        Command::new(BENCH)
            .args(["gen", "--n", "10000", "--out-dir"])
            .arg(dir.path()),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "annals-bench gen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = std::fs::read(dir.path().join("events.csv")).unwrap();
    assert_eq!(events.len(), 3_547_085, "bytes of events.csv, N = 10,000");
    assert_eq!(md5(&events), "f6185ce4da938b99a9213362d20586cb");
    let entities = std::fs::read_to_string(dir.path().join("entities.csv")).unwrap();
    let lines: Vec<&str> = entities.lines().collect();
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[0], "id,name,etype");
    assert_eq!(lines[1], "1,country-001,country");
    assert_eq!(lines[201], "201,person-0201,person");
}

fn smoke_run(out: &Path) -> std::process::Output {
    run_bounded(
        Command::new(BENCH)
            .arg("--smoke")
            .arg("--server-bin")
            .arg(SERVER)
            .arg("--out")
            .arg(out),
        Duration::from_secs(60),
    )
}

#[test]
fn smoke_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke.json");
    let output = smoke_run(&out);
    assert!(
        output.status.success(),
        "annals-bench --smoke failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let size = &result["sizes"][0];
    assert_eq!(size["n"], 2000);
    assert_eq!(size["gate"]["failed"], 0);
    assert!(size["gate"]["checked"].as_u64().unwrap() > 0);
    assert_eq!(size["queries"].as_array().unwrap().len(), 9);
    assert_eq!(size["appends"].as_array().unwrap().len(), 4);
    let table = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert!(table.contains("| 2k |"), "{table}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("| N |"));
}

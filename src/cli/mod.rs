//! The `annals` command line: `serve`, and a client subcommand for every
//! query. Client output is an aligned table by default, proto3 JSON with
//! `--json`.

use crate::client::{Client, ClientOptions, EventQuery};
use crate::json::to_json;
use crate::proto;
use crate::server::Config;
use clap::Parser;
use commands::{Cli, Command};
use local::{read_input, restore, serve, verify};
use print::*;
use std::process::ExitCode;

#[macro_use]
mod out;
mod cluster;
mod commands;
mod import;
mod local;
mod picture;
mod print;
mod trend;
mod trust;
mod watch;

/// Parses the command line and runs it.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<(), String>;

/// `KEY=VALUE` of a `--label` flag.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE (e.g. cameo_root=04)")),
    }
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

async fn execute(cli: Cli) -> Outcome {
    if let Command::Serve {
        listen,
        http,
        data_dir,
        no_seed,
        cache_mb,
        timeline_cache_mb,
        event_cache_mb,
        index_buffer_kib,
        log,
        trust,
    } = cli.command
    {
        let config = Config {
            listen,
            http: http.unwrap_or_default(),
            data_dir,
            seed: !no_seed,
            cache_bytes: cache_mb * 1024 * 1024,
            timeline_cache_bytes: timeline_cache_mb * 1024 * 1024,
            event_cache_bytes: event_cache_mb * 1024 * 1024,
            index_buffer_bytes: index_buffer_kib as usize * 1024,
            log: log.config().map_err(|error| error.to_string())?,
            ..Config::default()
        };
        let config = trust.apply(config).map_err(|error| error.to_string())?;
        return serve(config).await;
    }
    if let Command::Import { args, .. } = &cli.command {
        if args.dry_run() {
            let Command::Import { args, client } = cli.command else {
                unreachable!("matched above")
            };
            return import::run(None, args, client.json).await;
        }
    }
    match &cli.command {
        Command::Verify { data_dir } => return verify(data_dir),
        Command::RebuildIndexes { data_dir } => {
            let entries =
                crate::ops::rebuild_indexes(data_dir).map_err(|error| error.to_string())?;
            out!(
                "rebuilt the derived trees of {} from {entries} log entries",
                data_dir.display()
            );
            return Ok(());
        }
        Command::Restore {
            file,
            data_dir,
            log,
        } => return restore(file, data_dir, log).await,
        _ => {}
    }
    let Some(connection) = cli.command.client().cloned() else {
        unreachable!("the local commands are handled above")
    };
    let ca_cert = match &connection.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?)
        }
        None => None,
    };
    let options = ClientOptions {
        token: connection.token.clone(),
        ca_cert,
        gzip: connection.gzip,
    };
    let mut client = Client::connect_with(&connection.server, options)
        .await
        .map_err(|error| format!("cannot reach {}: {error}", connection.server))?;
    let json = connection.json;
    match cli.command {
        Command::Serve { .. }
        | Command::Verify { .. }
        | Command::RebuildIndexes { .. }
        | Command::Restore { .. } => unreachable!("handled above"),
        Command::Import { args, .. } => return import::run(Some(&mut client), args, json).await,
        Command::Trend { args, .. } => return trend::run(&mut client, args, json).await,
        Command::Timeline { args, .. } => return picture::timeline(&mut client, args).await,
        Command::Graph { args, .. } => return picture::graph(&mut client, args).await,
        Command::Watch { args, .. } => return watch::run(&mut client, args, json).await,
        Command::Export { out, .. } => {
            let mut lines = String::new();
            let last = client
                .read_log(0, 1, true)
                .await
                .map_err(status_text)?
                .last_seq;
            let mut next = 1;
            while next > 0 && next <= last {
                let page = client
                    .read_log(next, 1000, false)
                    .await
                    .map_err(status_text)?;
                for mut entry in page.entries.into_iter().filter(|entry| entry.seq <= last) {
                    entry.superseded_by.clear();
                    lines.push_str(&to_json(&entry).to_string());
                    lines.push('\n');
                }
                next = page.next_seq;
            }
            if out.as_os_str() == "-" {
                out::write(format_args!("{lines}"));
            } else {
                std::fs::write(&out, lines)
                    .map_err(|error| format!("{}: {error}", out.display()))?;
                eprintln!("exported {last} log entries to {}", out.display());
            }
        }
        Command::Entity { id, at, as_of, .. } => {
            let response = client.entity(&id, &at, as_of).await.map_err(status_text)?;
            if json {
                return print_json(&response);
            }
            print_entity(&response);
        }
        Command::Entities {
            entity_type,
            query,
            as_of,
            ..
        } => {
            let entity_type = parse_entity_type(&entity_type)?;
            let entities = client
                .entities(entity_type, &query, as_of)
                .await
                .map_err(status_text)?;
            if json {
                return print_json(&proto::ListEntitiesResponse {
                    entities,
                    next_page_token: String::new(),
                });
            }
            let rows = entities
                .iter()
                .map(|entity| {
                    vec![
                        entity.id.clone(),
                        entity.name.clone(),
                        type_name(entity.r#type),
                        entity.aliases.join(", "),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "TYPE", "ALIASES"], rows);
        }
        Command::Relations {
            entity,
            counterpart,
            kind,
            at,
            as_of,
            ..
        } => {
            let entity = entity.unwrap_or_default();
            let relations = client
                .relations(&entity, &counterpart, &kind, &at, as_of)
                .await
                .map_err(status_text)?;
            if json {
                return print_json(&proto::ListRelationsResponse::new(relations, String::new()));
            }
            print_relations(&relations);
        }
        Command::History {
            a, b, kind, as_of, ..
        } => {
            let b = b.unwrap_or_default();
            let intervals = client
                .history(&a, &b, &kind, as_of)
                .await
                .map_err(status_text)?;
            if json {
                return print_json(&proto::RelationHistoryResponse { intervals });
            }
            let rows = intervals
                .iter()
                .map(|interval| {
                    vec![
                        interval.kind.clone(),
                        between(&interval.a, &interval.b, interval.directed),
                        interval.from.clone(),
                        if interval.to.is_empty() {
                            "(active)".into()
                        } else {
                            interval.to.clone()
                        },
                        interval.begun_by.clone(),
                        interval.ended_by.clone(),
                    ]
                })
                .collect();
            print_table(
                &["KIND", "BETWEEN", "FROM", "TO", "BEGUN BY", "ENDED BY"],
                rows,
            );
        }
        Command::Events {
            entity,
            counterpart,
            kind,
            labels,
            from,
            to,
            as_of,
            newest_first,
            limit,
            ..
        } => {
            let query = EventQuery {
                entity,
                counterpart,
                kind,
                labels: labels.into_iter().collect(),
                from,
                to,
                as_of_seq: as_of,
                newest_first,
                limit,
            };
            let entries = client.events(&query).await.map_err(status_text)?;
            if json {
                return print_json(&proto::ListEventsResponse::new(entries, String::new()));
            }
            print_entries(&entries);
        }
        Command::Event { id, .. } => {
            let entry = client.event(&id).await.map_err(status_text)?;
            return print_json(&entry);
        }
        Command::Diff {
            from,
            to,
            entity,
            as_of,
            ..
        } => {
            let changes = client
                .diff(&from, &to, &entity, as_of)
                .await
                .map_err(status_text)?;
            if json {
                return print_json(&proto::DiffResponse { changes });
            }
            print_diff(&changes);
        }
        Command::Log {
            from,
            limit,
            reverse,
            ..
        } => {
            let response = client
                .read_log(from, limit, reverse)
                .await
                .map_err(status_text)?;
            if json {
                return print_json(&response);
            }
            print_entries(&response.entries);
            if response.next_seq > 0 {
                out!(
                    "(more from seq {}; last seq {})",
                    response.next_seq,
                    response.last_seq
                );
            }
        }
        Command::Tail {
            from,
            entity,
            kind,
            count,
            ..
        } => {
            let from = if from == 0 {
                client
                    .read_log(0, 1, true)
                    .await
                    .map_err(status_text)?
                    .last_seq
                    + 1
            } else {
                from
            };
            let mut stream = client
                .subscribe(from, &entity, &kind)
                .await
                .map_err(status_text)?;
            let mut seen = 0;
            while let Some(message) = stream.message().await.map_err(status_text)? {
                let Some(entry) = message.entry else { continue };
                if json {
                    out!("{}", to_json(&entry));
                } else {
                    out!("{}", entry_row(&entry).join("  "));
                }
                seen += 1;
                if count > 0 && seen >= count {
                    break;
                }
            }
        }
        Command::Append {
            file,
            batch,
            expected_last_seq,
            ..
        } => {
            let text = read_input(&file)?;
            let events = crate::seed::parse_lines(&text)
                .map_err(|error| format!("{}: {error}", file.display()))?;
            if events.is_empty() {
                return Err(format!("{}: no events", file.display()));
            }
            let mut expected = expected_last_seq;
            let mut appended = Vec::new();
            let mut last_seq = 0;
            for chunk in events.chunks(batch.max(1)) {
                let response = client
                    .append(chunk.to_vec(), expected.take())
                    .await
                    .map_err(|status| {
                        format!(
                            "{} (after {} events appended)",
                            status_text(status),
                            appended.len()
                        )
                    })?;
                last_seq = response.last_seq;
                appended.extend(response.entries);
            }
            if json {
                return print_json(&proto::AppendResponse {
                    entries: appended,
                    last_seq,
                    ..Default::default()
                });
            }
            let first = appended.iter().map(|entry| entry.seq).min().unwrap_or(0);
            let last = appended.iter().map(|entry| entry.seq).max().unwrap_or(0);
            out!(
                "appended {} events (seqs {first}–{last}); the log's last seq is {last_seq}",
                appended.len()
            );
        }
    }
    Ok(())
}

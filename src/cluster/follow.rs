//! Keeping a view live: an ordered pull consumer on the stream, from the
//! message after the view's position, hands every message to the writer
//! (`Database::deliver`), which applies those the view does not hold yet.
//!
//! The consumer lives on one JetStream server. When that server dies the
//! client notices by missed heartbeats; with `max_expires` of 4 s the
//! heartbeat is 2 s and async-nats recreates the consumer about 20 s after
//! the death (JetStream's default, 15 s heartbeats, takes 45–75 s). A
//! watchdog does not wait that long: once a second it compares the view
//! with the stream's last message, and a view that stays behind without
//! progress for `STALL` gets a new consumer.

use super::stream::{decode_raw_message, Stream};
use crate::engine::Database;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// The consumer's longest pull; its heartbeat is half of it.
const MAX_EXPIRES: Duration = Duration::from_secs(4);

/// How long a view may stay behind the stream without progress before its
/// consumer is replaced.
const STALL: Duration = Duration::from_secs(3);

/// Follows the stream until `stopping`. `caught_up` turns true once the
/// view holds every message the stream had when the consumer (re)started,
/// and false while the consumer cannot be made.
pub async fn follow(
    db: Database,
    stream: Stream,
    caught_up: watch::Sender<bool>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        if *stopping.borrow() {
            return;
        }
        let start = db.log_position() + 1;
        let consumer = async {
            let target = stream.last_position().await.map_err(|e| e.to_string())?;
            let consumer = stream
                .handle()
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    max_expires: MAX_EXPIRES,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((target, messages))
        };
        let (target, mut messages) = tokio::select! {
            made = consumer => match made {
                Ok(made) => made,
                Err(error) => {
                    tracing::warn!(%error, start, "cannot follow the stream; retrying");
                    caught_up.send_replace(false);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stopping.changed() => return,
                    }
                }
            },
            _ = stopping.changed() => return,
        };
        db.metrics().stream_position(target);
        if db.log_position() >= target {
            caught_up.send_replace(true);
        }
        let mut watchdog = tokio::time::interval(Duration::from_secs(1));
        // What this consumer handed to the writer last (the writer may be
        // busy applying it: that is no stall).
        let mut delivered = db.log_position();
        let mut progress = (delivered, tokio::time::Instant::now());
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = watchdog.tick() => {
                    let position = delivered.max(db.log_position());
                    if position != progress.0 {
                        progress = (position, tokio::time::Instant::now());
                    } else if progress.1.elapsed() >= STALL {
                        let behind = tokio::time::timeout(Duration::from_secs(2), stream.last_position())
                            .await
                            .is_ok_and(|last| last.is_ok_and(|last| last > position));
                        if behind {
                            tracing::warn!(position, "the view is behind the stream and not moving; making a new consumer");
                            break;
                        }
                        progress.1 = tokio::time::Instant::now();
                    }
                    continue;
                }
                _ = stopping.changed() => return,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "following the stream; making a new consumer");
                    break;
                }
                None => break,
            };
            let position = match message.info() {
                Ok(info) => {
                    // What the stream holds after this message is the
                    // view's lag (`annals_view_lag_messages`).
                    db.metrics()
                        .stream_position(info.stream_sequence + info.pending);
                    info.stream_sequence
                }
                Err(error) => {
                    tracing::warn!(%error, "a stream message without its position; making a new consumer");
                    break;
                }
            };
            let decoded = match decode_raw_message(position, &message.message) {
                Ok(decoded) => decoded,
                Err(error) => {
                    tracing::error!(%error, "a message of the stream cannot be read; the view stops here");
                    caught_up.send_replace(false);
                    let _ = stopping.changed().await;
                    return;
                }
            };
            if db.deliver(decoded).await.is_err() {
                return;
            }
            delivered = position;
            if position >= target {
                caught_up.send_replace(true);
            }
        }
    }
}

//! The replicated log on a NATS JetStream stream: `Sequencer` for the
//! engine, and what the follower reads.
//!
//! Publishing uses `Nats-Expected-Last-Sequence` (the view's position) as
//! the optimistic check and a `Nats-Msg-Id` per message, so that a retry
//! after a lost acknowledgement gets the first attempt's position instead of
//! storing the message twice. Leader elections show up in async-nats as
//! `StreamNotFound` or timeouts for a few seconds: retried until
//! `PUBLISH_PATIENCE` has passed.

use super::message::{self, SEQS_HEADER};
use super::LogConfig;
use crate::engine::{LogMessage, Refused, Sequencer};
use crate::error::{Error, Result};
use crate::store::StoredEntry;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{self as js_stream, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How long an append retries a publish through an election or an outage
/// before it answers UNAVAILABLE.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(20);

/// How long one request to JetStream (a publish's acknowledgement, a get)
/// may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to the stream holding the log.
#[derive(Clone)]
pub struct Stream {
    client: async_nats::Client,
    context: Context,
    stream: js_stream::Stream,
    subject: String,
    name: String,
    runtime: Handle,
}

impl Stream {
    /// Connects to the servers and finds the stream, creating it when
    /// absent (several nodes starting together create it once).
    pub async fn connect(config: &LogConfig) -> Result<Stream> {
        let unreachable = |error: &dyn std::error::Error| {
            Error::Unavailable(format!(
                "cannot reach the log's servers {}: {}",
                config.servers.join(","),
                crate::error::chain(error)
            ))
        };
        let addresses = config
            .servers
            .iter()
            .map(|server| {
                server.parse::<async_nats::ServerAddr>().map_err(|error| {
                    Error::invalid(
                        "log",
                        format!("{server:?} is not a server address: {error}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = async_nats::ConnectOptions::new()
            .name("annals")
            .connection_timeout(Duration::from_secs(3))
            .retry_on_initial_connect()
            .max_reconnects(None);
        let client = async_nats::connect_with_options(addresses, options)
            .await
            .map_err(|error| unreachable(&error))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let subject = format!("{}.log", config.stream);
        let wanted = js_stream::Config {
            name: config.stream.clone(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            num_replicas: config.replicas,
            discard: DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        };
        // The servers may still be starting, and the meta leader in
        // election: attempts for half a minute.
        let mut attempt = 0;
        let stream = loop {
            attempt += 1;
            match context.get_or_create_stream(wanted.clone()).await {
                Ok(stream) => break stream,
                Err(error) if attempt < 60 => {
                    tracing::info!(%error, attempt, "finding the log's stream; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => {
                    return Err(Error::Unavailable(format!(
                        "cannot find or create the stream {:?}: {}",
                        config.stream,
                        crate::error::chain(&error)
                    )))
                }
            }
        };
        Ok(Stream {
            client,
            context,
            stream,
            subject,
            name: config.stream.clone(),
            runtime: Handle::current(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn handle(&self) -> &js_stream::Stream {
        &self.stream
    }

    /// The position of the stream's last message.
    pub async fn last_position(&self) -> Result<u64> {
        let give_up = Instant::now() + PUBLISH_PATIENCE;
        loop {
            match self.stream.get_info().await {
                Ok(info) => return Ok(info.state.last_sequence),
                Err(error) if Instant::now() >= give_up => {
                    return Err(Error::Unavailable(format!("the stream's state: {error}")))
                }
                Err(error) => {
                    tracing::debug!(%error, "reading the stream's state; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The message at `position`, by a direct get: any of the stream's
    /// servers answers it, without JetStream's API (which answers 503 while
    /// its meta group has no leader, as happens under load). A server that
    /// has not caught up yet says NotFound: asked again a few times before
    /// the message counts as absent (for as long as other errors when the
    /// message is known to exist). Other errors are retried through
    /// elections, for `PUBLISH_PATIENCE`.
    async fn message(&self, position: u64, exists: bool) -> Result<Option<StreamMessage>> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let give_up = Instant::now() + PUBLISH_PATIENCE;
        let mut absent = 0;
        loop {
            match self.stream.direct_get(position).await {
                Ok(message) => return Ok(Some(message)),
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => {
                    absent += 1;
                    if absent >= 3 && (!exists || Instant::now() >= give_up) {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) if Instant::now() >= give_up => {
                    return Err(Error::Unavailable(format!(
                        "reading message {position} of the stream: {error}"
                    )))
                }
                Err(error) => {
                    tracing::debug!(%error, position, "reading a message of the stream; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Publishes the messages one after another, each with
    /// `Nats-Expected-Last-Sequence` of the one before it, stopping at the
    /// first the log does not place right after its predecessor.
    ///
    /// Not pipelined: with only the expected sequence, a message sent
    /// behind one that another node's message displaced would land in the
    /// displaced one's place; chaining them by `Nats-Expected-Last-Msg-Id`
    /// as well put nats-server 2.15.1's clustered stream into "critical
    /// write error: last msgid mismatch" (it stopped taking writes) in our
    /// tests. So a round of appends costs one acknowledgement after
    /// another, and one local write for all of them.
    async fn publish_all_async(
        &self,
        position: u64,
        messages: &[&[StoredEntry]],
    ) -> (usize, Option<Refused>) {
        let limit = self.client.server_info().max_payload;
        for (index, entries) in messages.iter().enumerate() {
            let at = position + index as u64;
            let payload = Bytes::from(message::encode(entries));
            if limit > 0 && payload.len() + 256 > limit {
                return (
                    index,
                    Some(Refused::Rejected(Error::ResourceExhausted(format!(
                        "this append is {} bytes in the stream; its servers take messages of at most {limit} (max_payload): send fewer events at once",
                        payload.len()
                    )))),
                );
            }
            let id = uuid::Uuid::now_v7().to_string();
            match self
                .publish_one(at, &payload, &id, &message::seqs_header(entries))
                .await
            {
                Ok(placed) if placed == at + 1 => {}
                Ok(placed) => {
                    tracing::warn!(at, placed, "the log placed a message elsewhere");
                    return (index, Some(Refused::Moved));
                }
                Err(refused) => return (index, Some(refused)),
            }
        }
        (messages.len(), None)
    }

    /// One message after `position`, retried with the same id through
    /// elections and timeouts.
    async fn publish_one(
        &self,
        position: u64,
        payload: &Bytes,
        id: &str,
        seqs: &str,
    ) -> Result<u64, Refused> {
        let give_up = Instant::now() + PUBLISH_PATIENCE;
        loop {
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .message_id(id)
                .expected_last_sequence(position)
                .header(SEQS_HEADER, seqs);
            let sent = match self
                .context
                .send_publish(self.subject.clone(), publish)
                .await
            {
                Ok(acknowledgement) => acknowledgement.await,
                Err(error) => Err(error),
            };
            let error = match sent {
                Ok(ack) => return Ok(ack.sequence),
                Err(error) => error,
            };
            match error.kind() {
                PublishErrorKind::WrongLastSequence => return Err(Refused::Moved),
                PublishErrorKind::MaxPayloadExceeded => {
                    return Err(Refused::Rejected(Error::ResourceExhausted(format!(
                        "this append is larger than the stream's servers take: {error}"
                    ))))
                }
                _ if Instant::now() >= give_up => {
                    return Err(Refused::Unavailable(format!(
                        "no acknowledgement from a quorum for {PUBLISH_PATIENCE:?} ({error})"
                    )))
                }
                _ => {
                    tracing::debug!(%error, position, "publishing to the log; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Up to `limit` messages after `position`; with `through`, every
    /// message up to that position is known to exist.
    async fn fetch_async(
        &self,
        position: u64,
        limit: usize,
        through: u64,
    ) -> Result<Vec<LogMessage>> {
        let mut messages = Vec::new();
        for next in position + 1..=position + limit as u64 {
            let Some(raw) = self.message(next, next <= through).await? else {
                break;
            };
            messages.push(decode_raw(next, &raw)?);
        }
        Ok(messages)
    }

    /// Binary search over the messages' `Annals-Seqs` headers.
    async fn locate_async(&self, last_seq: u64) -> Result<u64> {
        if last_seq == 0 {
            return Ok(0);
        }
        let not_a_copy = |why: String| {
            Error::FailedPrecondition(format!(
                "the view holds the log up to seq {last_seq}, but {why}: it is not a copy of the stream {:?}; serve it with an empty --data-dir to build the view from the stream",
                self.name
            ))
        };
        let (mut low, mut high) = (1, self.last_position().await?);
        while low <= high {
            let middle = low + (high - low) / 2;
            let raw = self
                .message(middle, true)
                .await?
                .ok_or_else(|| Error::DataLoss(format!("the stream has no message {middle}")))?;
            let (first, last) = seqs_of(middle, Some(&raw.headers))?;
            if last_seq < first {
                high = middle - 1;
            } else if last_seq > last {
                low = middle + 1;
            } else if last_seq == last {
                return Ok(middle);
            } else {
                return Err(not_a_copy(format!(
                    "the stream's message {middle} holds seqs {first} to {last}"
                )));
            }
        }
        Err(not_a_copy("no message of the stream ends there".into()))
    }
}

fn seqs_of(position: u64, headers: Option<&async_nats::HeaderMap>) -> Result<(u64, u64)> {
    headers
        .and_then(|headers| headers.get(SEQS_HEADER))
        .and_then(|value| message::parse_seqs(value.as_str()))
        .ok_or_else(|| {
            Error::DataLoss(format!(
                "message {position} of the stream has no {SEQS_HEADER} header: was it published by annals?"
            ))
        })
}

/// A message read from the stream, checked against its header.
fn decode_parts(
    position: u64,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Result<LogMessage> {
    let decoded = message::decode(position, payload)?;
    let first = decoded.entries.first().map_or(0, |entry| entry.seq);
    let last = decoded.entries.last().map_or(0, |entry| entry.seq);
    if seqs_of(position, headers)? != (first, last) {
        return Err(Error::DataLoss(format!(
            "message {position} of the stream holds seqs {first} to {last}, not what its {SEQS_HEADER} header says"
        )));
    }
    Ok(decoded)
}

fn decode_raw(position: u64, raw: &StreamMessage) -> Result<LogMessage> {
    decode_parts(position, Some(&raw.headers), &raw.payload)
}

/// A message a consumer delivered, at `position`.
pub(super) fn decode_raw_message(position: u64, raw: &async_nats::Message) -> Result<LogMessage> {
    decode_parts(position, raw.headers.as_ref(), &raw.payload)
}

impl Sequencer for Stream {
    fn publish_all(&self, position: u64, messages: &[&[StoredEntry]]) -> (usize, Option<Refused>) {
        self.runtime
            .block_on(self.publish_all_async(position, messages))
    }

    fn fetch(&self, position: u64, limit: usize) -> Result<Vec<LogMessage>> {
        self.runtime.block_on(self.fetch_async(position, limit, 0))
    }

    fn fetch_through(&self, position: u64, through: u64) -> Result<Vec<LogMessage>> {
        let limit = through.saturating_sub(position) as usize;
        self.runtime
            .block_on(self.fetch_async(position, limit, through))
    }

    fn last_position(&self) -> Result<u64> {
        self.runtime.block_on(Stream::last_position(self))
    }

    fn locate(&self, last_seq: u64) -> Result<u64> {
        self.runtime.block_on(self.locate_async(last_seq))
    }
}

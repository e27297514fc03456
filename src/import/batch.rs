//! One Append's worth of imported events, and how it is sent: atomic, below
//! the server's limits, and never overwriting. An event the server refuses
//! (same id with other content, or invalid) is taken out, reported, and the
//! rest sent again; a server that is gone stops the import.

use super::Summary;
use crate::client::Client;
use crate::proto;
use crate::wire::EncodedAppend;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tonic::{Code, Status};

/// Where an event of a batch came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A row (or JSON line) of the file being imported, by line.
    Line(u64),
    /// A declaration the importer made.
    Declaration,
}

/// Events waiting to be sent together, each encoded once as it is added.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each event as an entry of the request (`wire::EncodedAppend`).
    encoded: Vec<Vec<u8>>,
    ids: Vec<String>,
    origins: Vec<Origin>,
    /// Event id → position, to catch an id the file repeats.
    positions: HashMap<String, usize>,
    bytes: usize,
    /// The entities the events name (as participants, location or in
    /// effects), and those they declare.
    named: HashSet<String>,
    declared: HashSet<String>,
    /// Does an event correct another (which may be in a batch still on
    /// its way)?
    corrects: bool,
}

/// Why sending stopped.
#[derive(Debug)]
pub struct Lost(pub String);

impl Batch {
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    pub fn named(&self) -> &HashSet<String> {
        &self.named
    }

    pub fn declared(&self) -> &HashSet<String> {
        &self.declared
    }

    pub fn corrects(&self) -> bool {
        self.corrects
    }

    /// Encoded bytes of the events so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an event. An id already in the batch is not added again: with
    /// the same content it is a row the file repeats (already present),
    /// with other content a conflict.
    pub fn push(&mut self, event: proto::Event, origin: Origin, file: &str, summary: &mut Summary) {
        use proto::effect::Change;
        let encoded = EncodedAppend::encode_event(&event);
        if let Some(&position) = self.positions.get(&event.id) {
            if self.encoded[position] == encoded {
                summary.already_present += 1;
            } else {
                summary.conflict(format!(
                    "{}: event {:?} appears twice in the file with other content",
                    place(file, &origin),
                    event.id
                ));
            }
            return;
        }
        let named = &mut self.named;
        named.extend(event.participants.iter().map(|p| p.entity.clone()));
        if !event.location.is_empty() {
            named.insert(event.location.clone());
        }
        for effect in &event.effects {
            match &effect.change {
                Some(Change::Set(set)) => {
                    named.insert(set.entity.clone());
                }
                Some(Change::Begin(begin)) => named.extend([begin.a.clone(), begin.b.clone()]),
                Some(Change::End(end)) => named.extend([end.a.clone(), end.b.clone()]),
                Some(Change::Declare(declare)) => {
                    self.declared.insert(declare.id.clone());
                }
                None => {}
            }
        }
        self.corrects |= !event.corrects.is_empty();
        self.bytes += encoded.len();
        self.positions.insert(event.id.clone(), self.encoded.len());
        self.encoded.push(encoded);
        self.ids.push(event.id);
        self.origins.push(origin);
    }

    /// Puts declarations at the front of the batch (so that in the log
    /// they come before the rows that name them); ids already in the batch
    /// are left out.
    pub fn prepend_declarations(&mut self, declarations: Vec<proto::Event>, file: &str) {
        let mut front = Batch::default();
        let mut summary = Summary::default();
        for declaration in declarations {
            if !self.positions.contains_key(&declaration.id) {
                front.push(declaration, Origin::Declaration, file, &mut summary);
            }
        }
        if front.is_empty() {
            return;
        }
        let rest = std::mem::take(self);
        *self = front;
        let offset = self.encoded.len();
        for (id, position) in rest.positions {
            self.positions.insert(id, position + offset);
        }
        self.encoded.extend(rest.encoded);
        self.ids.extend(rest.ids);
        self.origins.extend(rest.origins);
        self.bytes += rest.bytes;
        self.named.extend(rest.named);
        self.declared.extend(rest.declared);
        self.corrects |= rest.corrects;
    }

    /// Sends the batch as one Append and counts what it stored. Refused
    /// events are taken out one at a time (the server names each) and the
    /// rest re-sent; an overloaded server is waited for a little.
    pub async fn send(
        mut self,
        client: &mut Client,
        file: &str,
        summary: &mut Summary,
    ) -> Result<(), Lost> {
        let mut overloaded = 0;
        while !self.encoded.is_empty() {
            let request = EncodedAppend::new(self.encoded.iter().map(Vec::as_slice));
            match client.append_encoded(request).await {
                Ok(response) => {
                    self.count(&response, summary);
                    return Ok(());
                }
                Err(status) if status.code() == Code::ResourceExhausted && overloaded < 6 => {
                    // Admission control: too many calls at once. A batch
                    // too large is cut below the limits before sending.
                    overloaded += 1;
                    tokio::time::sleep(Duration::from_millis(50 << overloaded)).await;
                }
                Err(status) => match refused_position(&status) {
                    Some(position) if position < self.encoded.len() => {
                        self.encoded.remove(position);
                        let id = self.ids.remove(position);
                        let origin = self.origins.remove(position);
                        let what = format!(
                            "{}: event {id:?}: {}",
                            place(file, &origin),
                            status.message()
                        );
                        if status.code() == Code::AlreadyExists {
                            summary.conflict(what);
                        } else {
                            summary.refusal(what);
                        }
                    }
                    _ => {
                        let first = self.origins.iter().find_map(|origin| match origin {
                            Origin::Line(line) => Some(*line),
                            Origin::Declaration => None,
                        });
                        return Err(Lost(format!(
                            "{:?}: {} (the batch from {}:{} was not stored)",
                            status.code(),
                            status.message(),
                            file,
                            first.unwrap_or(0)
                        )));
                    }
                },
            }
        }
        Ok(())
    }

    fn count(&self, response: &proto::AppendResponse, summary: &mut Summary) {
        for (position, origin) in self.origins.iter().enumerate() {
            let present = response
                .already_present
                .get(position)
                .copied()
                .unwrap_or(false);
            match (origin, present) {
                (Origin::Line(_), true) => summary.already_present += 1,
                (Origin::Line(_), false) => summary.imported += 1,
                (Origin::Declaration, false) => summary.declared += 1,
                (Origin::Declaration, true) => {}
            }
        }
    }
}

/// `file:line`, or `file (a declaration)`.
fn place(file: &str, origin: &Origin) -> String {
    match origin {
        Origin::Line(line) => format!("{file}:{line}"),
        Origin::Declaration => format!("{file} (a declaration)"),
    }
}

/// The position of the event a refusal names (`events[N]…`), when the
/// refusal is about one event.
fn refused_position(status: &Status) -> Option<usize> {
    if !matches!(
        status.code(),
        Code::AlreadyExists | Code::InvalidArgument | Code::FailedPrecondition
    ) {
        return None;
    }
    let message = status.message();
    let start = message.find("events[")? + "events[".len();
    let end = start + message[start..].find(']')?;
    message[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_event() {
        let status = Status::already_exists(
            "events[12]: event \"x\" already exists (seq 4) with other content",
        );
        assert_eq!(refused_position(&status), Some(12));
        let status = Status::invalid_argument("events[3].participants[0].entity: bad");
        assert_eq!(refused_position(&status), Some(3));
        assert_eq!(refused_position(&Status::unavailable("events[1]")), None);
    }

    #[test]
    fn declarations_go_in_front() {
        let event = |id: &str| proto::Event {
            id: id.into(),
            kind: "consult".into(),
            ..Default::default()
        };
        let mut batch = Batch::default();
        let mut summary = Summary::default();
        batch.push(event("row"), Origin::Line(7), "f", &mut summary);
        batch.push(event("actor-a"), Origin::Declaration, "f", &mut summary);
        batch.prepend_declarations(vec![event("actor-b"), event("actor-a")], "f");
        assert_eq!(batch.ids, ["actor-b", "row", "actor-a"]);
        assert_eq!(batch.positions["row"], 1);
        assert_eq!(batch.origins[1], Origin::Line(7));
        assert_eq!(batch.encoded[1], EncodedAppend::encode_event(&event("row")));
    }

    #[test]
    fn a_repeated_row_is_counted_once() {
        let mut batch = Batch::default();
        let mut summary = Summary::default();
        let event = proto::Event {
            id: "a".into(),
            kind: "consult".into(),
            ..Default::default()
        };
        batch.push(event.clone(), Origin::Line(1), "f", &mut summary);
        batch.push(event.clone(), Origin::Line(2), "f", &mut summary);
        let other = proto::Event {
            summary: "other".into(),
            ..event
        };
        batch.push(other, Origin::Line(3), "f", &mut summary);
        assert_eq!(batch.len(), 1);
        assert_eq!(summary.already_present, 1);
        assert_eq!(summary.conflicts, 1);
        assert!(summary.problems[0].starts_with("f:3: "));
    }
}

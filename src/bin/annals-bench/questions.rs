//! The four questions (WORKLOAD.md), their random parameters, and how each
//! is asked over gRPC.

use crate::workload::{SplitMix64, ENTITIES, VALID_DAYS};
use annals::client::TimelineServiceClient;
use annals::proto;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

pub type Grpc = TimelineServiceClient<Channel>;

/// A new HTTP/2 connection (one per benchmark client). No compression: on
/// loopback gzip only burns the two cores the server needs.
pub async fn connect(address: &str) -> crate::Res<Grpc> {
    let channel = channel(address).await?;
    Ok(TimelineServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

/// A new HTTP/2 connection to the server at `address`.
pub async fn channel(address: &str) -> crate::Res<Channel> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// Relations of X at T.
    Q1,
    /// State of X at T: attributes and relations, one call.
    Q2,
    /// Q1 as known at seq S.
    Q3,
    /// Events of X in a window, first 100.
    Q4,
    /// Q1 for the most mentioned entity (country-001).
    Q1Hot,
}

impl Question {
    pub const ALL: [Question; 5] = [
        Question::Q1,
        Question::Q2,
        Question::Q3,
        Question::Q4,
        Question::Q1Hot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Question::Q1 => "q1",
            Question::Q2 => "q2",
            Question::Q3 => "q3",
            Question::Q4 => "q4",
            Question::Q1Hot => "q1_hot",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Question::Q1 => "Q1 relations of X at T (ListRelations)",
            Question::Q2 => "Q2 state of X at T (GetEntity)",
            Question::Q3 => "Q3 Q1 as known at seq S (ListRelations as_of_seq)",
            Question::Q4 => "Q4 events of X in a window, first 100 (ListEvents)",
            Question::Q1Hot => "Q1 for the hottest entity, country-001",
        }
    }
}

/// Parameters of one call, drawn as WORKLOAD.md "Parameters" says.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub entity: u16,
    /// Valid day T (days since 1900-01-01); also T1 for Q4.
    pub at: u32,
    /// Annals seq S in 2..=N+1 (Q3).
    pub as_of_seq: u64,
    /// Q4 window length T2 - T1 in days (30..=3650); the window is
    /// [T1, T2 - 1 day].
    pub window_days: u32,
}

impl Params {
    pub fn draw(question: Question, n: u64, rng: &mut SplitMix64) -> Params {
        let entity = match question {
            Question::Q1Hot => 1,
            _ => rng.between(1, u64::from(ENTITIES)) as u16,
        };
        let at = rng.below(u64::from(VALID_DAYS)) as u32;
        let as_of_seq = if question == Question::Q3 {
            rng.between(2, n + 1)
        } else {
            0
        };
        let window_days = if question == Question::Q4 {
            rng.between(30, 3650) as u32
        } else {
            0
        };
        Params {
            entity,
            at,
            as_of_seq,
            window_days,
        }
    }

    /// The last day of the Q4 window, T2 - 1 day.
    pub fn window_end(&self) -> u32 {
        self.at + self.window_days - 1
    }
}

/// Every relation of X at T (as of S), following pages.
pub async fn relations(
    client: &mut Grpc,
    entity: &str,
    at: &str,
    as_of_seq: u64,
) -> Result<Vec<proto::Relation>, Status> {
    let mut request = proto::ListRelationsRequest {
        entity: entity.to_string(),
        at: at.to_string(),
        as_of_seq,
        page_size: 1000,
        ..Default::default()
    };
    let mut relations = Vec::new();
    // Bounded: more pages than relations could exist means a broken token.
    for _ in 0..10_000 {
        let page = client.list_relations(request.clone()).await?.into_inner();
        relations.extend(page.relations);
        if page.next_page_token.is_empty() {
            return Ok(relations);
        }
        request.page_token = page.next_page_token;
    }
    Err(Status::internal("ListRelations kept returning page tokens"))
}

pub async fn entity_state(
    client: &mut Grpc,
    entity: &str,
    at: &str,
) -> Result<proto::GetEntityResponse, Status> {
    let request = proto::GetEntityRequest {
        id: entity.to_string(),
        at: at.to_string(),
        as_of_seq: 0,
    };
    Ok(client.get_entity(request).await?.into_inner())
}

/// The first page (100) of events of X overlapping [from, to].
pub async fn events(
    client: &mut Grpc,
    entity: &str,
    from: &str,
    to: &str,
) -> Result<proto::ListEventsResponse, Status> {
    let request = proto::ListEventsRequest {
        entity: entity.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        page_size: 100,
        ..Default::default()
    };
    Ok(client.list_events(request).await?.into_inner())
}

//! What each picture asks the API, through any TimelineService client: the
//! CLI's (over the network) and the console's (in-process, through the
//! same services and checks as any call). One place, so both draw the same
//! answers.

use super::{GraphData, TimelineData, TrendData};
use crate::proto;
use crate::proto::timeline_service_client::TimelineServiceClient;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::Status;

/// Relations a graph draws at most; more are left out, and its title says so.
pub const GRAPH_RELATIONS: u32 = 600;

/// Entities a graph names (by GetEntity each); the rest show their ids.
const NAMED_NODES: usize = 80;

/// An entity's relation and attribute histories, as known at `as_of_seq`.
pub async fn timeline<T>(
    client: &mut TimelineServiceClient<T>,
    entity: &str,
    as_of_seq: u64,
) -> Result<TimelineData, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    // GetEntity resolves an alias and names the entity.
    let entity = client
        .get_entity(proto::GetEntityRequest {
            id: entity.to_string(),
            at: String::new(),
            as_of_seq,
        })
        .await?
        .into_inner()
        .entity
        .unwrap_or_default();
    let relations = client
        .relation_history(proto::RelationHistoryRequest {
            a: entity.id.clone(),
            as_of_seq,
            ..Default::default()
        })
        .await?
        .into_inner()
        .intervals;
    let attributes = client
        .attribute_history(proto::AttributeHistoryRequest {
            entity: entity.id.clone(),
            key: String::new(),
            as_of_seq,
        })
        .await?
        .into_inner()
        .intervals;
    Ok(TimelineData {
        entity,
        relations,
        attributes,
        as_of_seq,
    })
}

/// The relations active at `at` (one entity's, or the whole graph's first
/// `GRAPH_RELATIONS`), with the names of the entities they join.
pub async fn graph<T>(
    client: &mut TimelineServiceClient<T>,
    entity: Option<&str>,
    at: &str,
    as_of_seq: u64,
) -> Result<GraphData, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let focus = match entity {
        Some(entity) => Some(
            client
                .get_entity(proto::GetEntityRequest {
                    id: entity.to_string(),
                    at: at.to_string(),
                    as_of_seq,
                })
                .await?
                .into_inner()
                .entity
                .unwrap_or_default()
                .id,
        ),
        None => None,
    };
    let answer = client
        .list_relations(proto::ListRelationsRequest {
            entity: focus.clone().unwrap_or_default(),
            at: at.to_string(),
            as_of_seq,
            page_size: GRAPH_RELATIONS,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut ids: Vec<&str> = answer
        .relations
        .iter()
        .flat_map(|relation| [relation.a.as_str(), relation.b.as_str()])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut names = std::collections::BTreeMap::new();
    for id in ids.into_iter().take(NAMED_NODES) {
        let named = client
            .get_entity(proto::GetEntityRequest {
                id: id.to_string(),
                at: at.to_string(),
                as_of_seq,
            })
            .await?
            .into_inner()
            .entity;
        if let Some(named) = named {
            names.insert(named.id, named.name);
        }
    }
    Ok(GraphData {
        truncated: !answer.next_page_token.is_empty(),
        relations: answer.relations,
        names,
        focus,
        at: at.to_string(),
        as_of_seq,
    })
}

/// The CountEvents answer `request` asks for, described for a title.
pub async fn trend<T>(
    client: &mut TimelineServiceClient<T>,
    request: proto::CountEventsRequest,
) -> Result<TrendData, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let subject = match (request.entity.as_str(), request.counterpart.as_str()) {
        ("", _) => "every entity".to_string(),
        (entity, "") => entity.to_string(),
        (entity, counterpart) => format!("{entity} and {counterpart}"),
    };
    let value_label = request.value_label.clone();
    let counts = client.count_events(request).await?.into_inner();
    Ok(TrendData {
        counts,
        subject,
        value_label,
    })
}

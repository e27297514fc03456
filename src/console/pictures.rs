//! The pictures, served: `GET /draw/timeline`, `/draw/graph`, `/draw/trend`
//! answer SVG drawn by `crate::draw` from what the API answers the caller
//! (in-process, with the caller's credentials) — the drawing `annals
//! timeline|graph|trend --svg` writes.

use super::gateway::error;
use super::local::Local;
use crate::draw;
use crate::proto;
use crate::time::{query_instant, window_start};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tonic::Status;

#[derive(Debug, Deserialize)]
pub struct TimelineQuery {
    entity: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    as_of: u64,
}

#[derive(Debug, Deserialize)]
pub struct GraphQuery {
    #[serde(default)]
    at: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    as_of: u64,
}

#[derive(Debug, Deserialize)]
pub struct TrendQuery {
    entity: String,
    #[serde(default)]
    counterpart: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// `day`, `month` (the default) or `year`.
    #[serde(default)]
    bucket: String,
    /// A numeric label to average, e.g. `goldstein`.
    #[serde(default)]
    label: String,
    #[serde(default)]
    as_of: u64,
}

pub async fn timeline(
    State(local): State<Local>,
    headers: HeaderMap,
    Query(query): Query<TimelineQuery>,
) -> Response {
    let drawn = async {
        let (from, to) = bounds(&query.from, &query.to)?;
        let mut client = local.timeline(&headers);
        let data = draw::ask::timeline(&mut client, &query.entity, query.as_of).await?;
        let (from, to) = draw::window(&data, from, to);
        Ok::<_, Status>(draw::timeline(&data, from, to))
    };
    svg(drawn.await)
}

pub async fn graph(
    State(local): State<Local>,
    headers: HeaderMap,
    Query(query): Query<GraphQuery>,
) -> Response {
    let drawn = async {
        let mut client = local.timeline(&headers);
        let entity = (!query.entity.is_empty()).then_some(query.entity.as_str());
        let data = draw::ask::graph(&mut client, entity, &query.at, query.as_of).await?;
        Ok::<_, Status>(draw::graph(&data))
    };
    svg(drawn.await)
}

pub async fn trend(
    State(local): State<Local>,
    headers: HeaderMap,
    Query(query): Query<TrendQuery>,
) -> Response {
    let drawn = async {
        let bucket = bucket(&query.bucket)?;
        let mut client = local.timeline(&headers);
        let request = proto::CountEventsRequest {
            entity: query.entity,
            counterpart: query.counterpart,
            from: query.from,
            to: query.to,
            bucket: bucket as i32,
            value_label: query.label,
            as_of_seq: query.as_of,
            ..Default::default()
        };
        let data = draw::ask::trend(&mut client, request).await?;
        draw::trend(&data).map_err(Status::internal)
    };
    svg(drawn.await)
}

/// The window's instants: `from` from the start of its span, `to` to its end.
pub fn bounds(from: &str, to: &str) -> Result<(Option<i64>, Option<i64>), Status> {
    let parse = |field: &str, text: &str, read: fn(&str) -> Result<i64, crate::time::TimeError>| {
        if text.is_empty() {
            return Ok(None);
        }
        read(text)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("{field}: {error}")))
    };
    Ok((
        parse("from", from, window_start)?,
        parse("to", to, query_instant)?,
    ))
}

/// A bucket's name as the API's enum.
pub fn bucket(name: &str) -> Result<proto::Bucket, Status> {
    match name {
        "" | "month" => Ok(proto::Bucket::Month),
        "day" => Ok(proto::Bucket::Day),
        "year" => Ok(proto::Bucket::Year),
        other => Err(Status::invalid_argument(format!(
            "bucket: {other:?} is not day, month or year"
        ))),
    }
}

fn svg(drawn: Result<String, Status>) -> Response {
    match drawn {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            svg,
        )
            .into_response(),
        Err(status) => error(&status),
    }
}

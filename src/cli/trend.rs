//! `annals trend A [B]`: the events of an entity (or a dyad) counted per
//! day, month or year, one line per bucket with a bar.

use super::{parse_label, print::print_json, status_text, Outcome};
use crate::client::Client;
use crate::proto;
use crate::time::{bucket_of, Bucket, ValidTime};
use clap::{Args, ValueEnum};

/// The longest bar, in characters.
const BAR_WIDTH: usize = 40;

/// Gaps between buckets are printed as empty buckets up to this many lines.
const MAX_FILLED_LINES: usize = 5_000;

#[derive(Args, Debug)]
pub struct TrendArgs {
    /// Entity id or alias.
    entity: String,
    /// The other side of the dyad (id or alias).
    counterpart: Option<String>,
    /// Start of the valid-time window (default: the first event's).
    #[arg(long, default_value = "")]
    from: String,
    /// End of the valid-time window (default: now).
    #[arg(long, default_value = "")]
    to: String,
    /// Bucket size.
    #[arg(long, value_enum, default_value_t = By::Month)]
    by: By,
    /// Only events of this kind (e.g. a CAMEO event code's kind).
    #[arg(long, default_value = "")]
    kind: String,
    /// Only events with this label (KEY=VALUE; repeat for more).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A numeric label to average per bucket (e.g. goldstein).
    #[arg(long, default_value = "")]
    value: String,
    /// Only what the log knew at this seq (0: everything).
    #[arg(long, default_value_t = 0)]
    as_of: u64,
    /// Draw the trend as an SVG file instead ("-" for stdout): the
    /// console's chart.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum By {
    Day,
    Month,
    Year,
}

impl By {
    fn bucket(self) -> Bucket {
        match self {
            By::Day => Bucket::Day,
            By::Month => Bucket::Month,
            By::Year => Bucket::Year,
        }
    }

    fn wire(self) -> proto::Bucket {
        match self {
            By::Day => proto::Bucket::Day,
            By::Month => proto::Bucket::Month,
            By::Year => proto::Bucket::Year,
        }
    }
}

pub async fn run(client: &mut Client, args: TrendArgs, json: bool) -> Outcome {
    let request = proto::CountEventsRequest {
        entity: args.entity.clone(),
        counterpart: args.counterpart.clone().unwrap_or_default(),
        kind: args.kind.clone(),
        labels: args.labels.iter().cloned().collect(),
        from: args.from.clone(),
        to: args.to.clone(),
        bucket: args.by.wire() as i32,
        value_label: args.value.clone(),
        as_of_seq: args.as_of,
    };
    if let Some(path) = &args.svg {
        let data = crate::draw::ask::trend(client.raw(), request)
            .await
            .map_err(status_text)?;
        let svg = crate::draw::trend(&data)?;
        super::picture::write(path, &svg)?;
        super::picture::report(path, &format!("{} buckets", data.counts.buckets.len()));
        return Ok(());
    }
    let response = client.count_events(request).await.map_err(status_text)?;
    if json {
        return print_json(&response);
    }
    let buckets = filled(&response.buckets, args.by.bucket());
    let most = buckets.iter().map(|bucket| bucket.count).max().unwrap_or(0);
    let heading = match args.by {
        By::Day => "DAY",
        By::Month => "MONTH",
        By::Year => "YEAR",
    };
    let value = (!args.value.is_empty()).then(|| format!("MEAN {}", args.value.to_uppercase()));
    let count_width = most.to_string().len().max("COUNT".len());
    let start_width = buckets
        .iter()
        .map(|bucket| bucket.start.len())
        .max()
        .unwrap_or(0)
        .max(heading.len());
    let value_width = value.as_ref().map_or(0, String::len).max(6);
    let mut header = format!("{heading:<start_width$}  {:>count_width$}", "COUNT");
    if let Some(value) = &value {
        header.push_str(&format!("  {value:>value_width$}"));
    }
    out!("{header}");
    for bucket in &buckets {
        let mut line = format!(
            "{:<start_width$}  {:>count_width$}",
            bucket.start, bucket.count
        );
        if value.is_some() {
            let mean = if bucket.valued > 0 {
                format!("{:.2}", bucket.mean)
            } else {
                "-".to_string()
            };
            line.push_str(&format!("  {mean:>value_width$}"));
        }
        let bar = (bucket.count as usize * BAR_WIDTH).div_ceil(most.max(1) as usize);
        line.push_str("  ");
        line.push_str(&"█".repeat(bar));
        out!("{}", line.trim_end());
    }
    out!(
        "{} events in {} buckets (as of seq {})",
        response.total,
        response.buckets.len(),
        response.as_of_seq
    );
    Ok(())
}

/// The buckets with the empty ones between them filled in (a time series
/// reads wrong with its gaps closed), unless that would be too many lines.
fn filled(buckets: &[proto::EventCount], bucket: Bucket) -> Vec<proto::EventCount> {
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        return Vec::new();
    };
    let start = |text: &str| ValidTime::parse(text).ok().map(|time| time.earliest());
    let (Some(mut at), Some(end)) = (start(&first.start), start(&last.start)) else {
        return buckets.to_vec();
    };
    let mut lines = Vec::new();
    let mut given = buckets.iter().peekable();
    while at <= end {
        let Some((first, next, text)) = bucket_of(at, bucket) else {
            return buckets.to_vec();
        };
        match given.peek() {
            Some(counted) if counted.start == text => {
                lines.push(given.next().cloned().unwrap_or_default())
            }
            _ => lines.push(proto::EventCount {
                start: text,
                ..Default::default()
            }),
        }
        if lines.len() > MAX_FILLED_LINES {
            return buckets.to_vec();
        }
        debug_assert!(next > first);
        at = next;
    }
    lines
}

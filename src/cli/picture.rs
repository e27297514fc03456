//! `annals timeline ENTITY --svg FILE` and `annals graph --at T --svg FILE`:
//! the console's pictures, drawn from the server's answers into a
//! standalone SVG file ("-" for stdout).

use super::{status_text, Outcome};
use crate::client::Client;
use crate::draw;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct TimelineArgs {
    /// Entity id or alias (e.g. DPRK).
    entity: String,
    /// The SVG file to write ("-" for stdout).
    #[arg(long)]
    svg: PathBuf,
    /// Start of the time axis (default: the year of the first change).
    #[arg(long, default_value = "")]
    from: String,
    /// End of the time axis (default: now).
    #[arg(long, default_value = "")]
    to: String,
    /// Only what the log knew at this seq (0: everything).
    #[arg(long, default_value_t = 0)]
    as_of: u64,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// The SVG file to write ("-" for stdout).
    #[arg(long)]
    svg: PathBuf,
    /// The instant drawn (1951-06-01, 1950, RFC 3339); default: now.
    #[arg(long, default_value = "")]
    at: String,
    /// Only this entity's relations (id or alias), it in the middle.
    #[arg(long, default_value = "")]
    entity: String,
    /// Only what the log knew at this seq (0: everything).
    #[arg(long, default_value_t = 0)]
    as_of: u64,
}

pub async fn timeline(client: &mut Client, args: TimelineArgs) -> Outcome {
    let (from, to) = crate::console::bounds(&args.from, &args.to).map_err(status_text)?;
    let data = draw::ask::timeline(client.raw(), &args.entity, args.as_of)
        .await
        .map_err(status_text)?;
    let (from, to) = draw::window(&data, from, to);
    let intervals = data.relations.len() + data.attributes.len();
    write(&args.svg, &draw::timeline(&data, from, to))?;
    report(
        &args.svg,
        &format!("{intervals} intervals of {}", data.entity.id),
    );
    Ok(())
}

pub async fn graph(client: &mut Client, args: GraphArgs) -> Outcome {
    let entity = (!args.entity.is_empty()).then_some(args.entity.as_str());
    let data = draw::ask::graph(client.raw(), entity, &args.at, args.as_of)
        .await
        .map_err(status_text)?;
    write(&args.svg, &draw::graph(&data))?;
    report(&args.svg, &format!("{} relations", data.relations.len()));
    Ok(())
}

/// Writes `svg` to `path`, or to stdout for "-".
pub fn write(path: &Path, svg: &str) -> Outcome {
    if path == Path::new("-") {
        out!("{svg}");
        return Ok(());
    }
    std::fs::write(path, svg).map_err(|error| format!("{}: {error}", path.display()))
}

/// Says what was written, on stderr (stdout may be the picture).
pub fn report(path: &Path, what: &str) {
    if path != Path::new("-") {
        eprintln!("wrote {what} to {}", path.display());
    }
}

//! Pictures of the data, as SVG: an entity's timeline, the relation graph
//! at an instant, a dyad's trend. Each is drawn from the API's answers —
//! the messages every client gets — so the console (which serves them) and
//! `annals timeline|graph|trend --svg` (which asks a server for the
//! answers) show the same drawing of the same data.

pub mod ask;
mod graph;
mod scale;
mod timeline;
mod trend;

#[cfg(test)]
mod tests;

pub use graph::{graph, GraphData};
pub use scale::span;
pub use timeline::{timeline, window, TimelineData};
pub use trend::{trend, TrendData, BAR_FILL};

/// A colour per relation kind, the same in every picture: picked by a hash
/// of the kind's name, so `alliance` is one colour in the timeline and the
/// graph, and stays so as kinds are added.
#[derive(Clone, Copy, Debug, Default)]
pub struct Palette;

const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
];

impl Palette {
    pub fn index(&self, kind: &str) -> usize {
        let hash = kind.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % COLORS.len() as u64) as usize
    }

    pub fn color(&self, kind: &str) -> &'static str {
        COLORS[self.index(kind)]
    }
}

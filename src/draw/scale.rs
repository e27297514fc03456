//! The time axis of a picture: valid time mapped to x, and the ticks that
//! label it (years, decades, centuries, or months for a short window).

use crate::time::{bucket_of, Bucket, Instant, ValidTime};
use svg::node::element::{Group, Line, Text};

const MICROS_PER_YEAR: f64 = 365.2425 * 86_400_000_000.0;

/// Valid time `from..=to` drawn across `width` pixels from `left`.
#[derive(Clone, Copy, Debug)]
pub struct TimeScale {
    pub from: Instant,
    pub to: Instant,
    pub left: f64,
    pub width: f64,
}

impl TimeScale {
    pub fn new(from: Instant, to: Instant, left: f64, width: f64) -> TimeScale {
        TimeScale {
            from,
            to: to.max(from + 1),
            left,
            width,
        }
    }

    /// The x of `instant`, held to the window's edges.
    pub fn x(&self, instant: Instant) -> f64 {
        let clamped = instant.clamp(self.from, self.to);
        let share = (clamped - self.from) as f64 / (self.to - self.from) as f64;
        self.left + share * self.width
    }

    pub fn contains(&self, instant: Instant) -> bool {
        (self.from..=self.to).contains(&instant)
    }

    /// Tick instants and their labels: at most about ten, on round years
    /// (or months when the window is under three years).
    pub fn ticks(&self) -> Vec<(Instant, String)> {
        let years = (self.to - self.from) as f64 / MICROS_PER_YEAR;
        let (bucket, step) = if years < 3.0 {
            let months = (years * 12.0).max(1.0);
            let step = [1, 2, 3, 6, 12]
                .into_iter()
                .find(|step| months / f64::from(*step) <= 10.0)
                .unwrap_or(12);
            (Bucket::Month, step)
        } else {
            let step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000]
                .into_iter()
                .find(|step| years / f64::from(*step) <= 10.0)
                .unwrap_or(1000);
            (Bucket::Year, step)
        };
        let mut ticks = Vec::new();
        let mut at = self.from;
        while let Some((first, next, text)) = bucket_of(at, bucket) {
            if first >= self.from && first <= self.to && Self::on_step(&text, bucket, step) {
                ticks.push((first, text));
            }
            if next > self.to || ticks.len() > 40 {
                break;
            }
            at = next;
        }
        ticks
    }

    /// Is the bucket `text` (`1950`, `1950-06`) a multiple of `step`?
    fn on_step(text: &str, bucket: Bucket, step: u32) -> bool {
        let number = |part: Option<&str>| part.and_then(|part| part.parse::<u32>().ok());
        let mut parts = text.split('-');
        let year = number(parts.next());
        match bucket {
            Bucket::Year => year.is_some_and(|year| year % step == 0),
            _ => number(parts.next()).is_some_and(|month| (month - 1) % step == 0),
        }
    }

    /// The axis: a line from `left` across, ticks with their labels above
    /// it and faint guides from `top` down to `bottom`.
    pub fn axis(&self, top: f64, bottom: f64) -> Group {
        let mut axis = Group::new().set("class", "axis");
        axis = axis.add(
            Line::new()
                .set("x1", self.left)
                .set("x2", self.left + self.width)
                .set("y1", top)
                .set("y2", top)
                .set("stroke", "#555"),
        );
        for (instant, label) in self.ticks() {
            let x = round(self.x(instant));
            axis = axis
                .add(
                    Line::new()
                        .set("x1", x)
                        .set("x2", x)
                        .set("y1", top)
                        .set("y2", bottom)
                        .set("stroke", "#ddd"),
                )
                .add(
                    Text::new(label)
                        .set("x", x)
                        .set("y", top - 6.0)
                        .set("text-anchor", "middle")
                        .set("font-size", 11),
                );
        }
        axis
    }
}

/// The span a valid time's text denotes, if it parses.
pub fn span(text: &str) -> Option<(Instant, Instant)> {
    let time = ValidTime::parse(text).ok()?;
    Some((time.earliest(), time.latest()))
}

/// Pixels to two decimals: the SVG stays small and byte-for-byte stable.
pub fn round(pixels: f64) -> f64 {
    (pixels * 100.0).round() / 100.0
}

/// Now, as an instant.
pub fn now() -> Instant {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn year(text: &str) -> Instant {
        span(text).unwrap().0
    }

    #[test]
    fn the_window_maps_to_the_width_and_is_held_at_its_edges() {
        let scale = TimeScale::new(year("1950"), year("1960"), 100.0, 1000.0);
        assert_eq!(scale.x(year("1950")), 100.0);
        assert_eq!(scale.x(year("1960")), 1100.0);
        assert!((scale.x(year("1955")) - 600.0).abs() < 1.0);
        assert_eq!(scale.x(year("1900")), 100.0);
        assert_eq!(scale.x(year("2000")), 1100.0);
    }

    #[test]
    fn ticks_are_round_and_few() {
        let decades = TimeScale::new(year("1945"), year("2025"), 0.0, 900.0).ticks();
        let labels: Vec<&str> = decades.iter().map(|(_, label)| label.as_str()).collect();
        assert_eq!(
            labels,
            ["1950", "1960", "1970", "1980", "1990", "2000", "2010", "2020"]
        );
        let months = TimeScale::new(year("1953-01"), year("1953-12"), 0.0, 900.0).ticks();
        assert!(months.len() <= 11 && months.len() >= 5, "{months:?}");
        assert!(months.iter().all(|(_, label)| label.starts_with("1953-")));
    }
}

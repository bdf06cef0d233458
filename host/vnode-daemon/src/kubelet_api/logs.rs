//! Pure log logic between ECI's `DescribeContainerLog` and the kubelet's `/containerLogs`:
//! parsing ECI's timestamped content, applying the kubelet options ECI cannot apply exactly
//! (tail after our own time filter, `sinceTime` to the nanosecond, `limitBytes` over the
//! whole stream, timestamp stripping), and the follow cursor that turns repeated,
//! overlapping polls into a stream where every line appears exactly once.
//!
//! Why we always ask ECI for `Timestamps=true` and do the filtering here: ECI's `StartTime`
//! is an RFC 3339 string with (documented) second precision and `LimitBytes` counts the bytes
//! *it* renders. With each line's own timestamp we can filter exactly, and the follow cursor
//! can recognise lines it has already emitted.

use std::collections::HashMap;

use bytes::Bytes;
use jiff::Timestamp;

use super::LogOptions;

/// ECI's documented maximum for `Tail` (lines per `DescribeContainerLog` answer).
pub const ECI_MAX_TAIL: u32 = 2000;

/// One log line as ECI returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The line's timestamp (from ECI's `Timestamps=true` prefix).
    pub at: Timestamp,
    /// The text, without timestamp and without the trailing newline.
    pub text: String,
}

/// Splits ECI `Content` (with `Timestamps=true`) into lines. A line whose prefix is not a
/// timestamp (ECI should never send one) inherits the previous line's time, or `fallback`
/// for the first line, so it is neither lost nor re-emitted by the follow cursor.
pub fn parse_content(content: &str, fallback: Timestamp) -> Vec<LogLine> {
    let mut last = fallback;
    content
        .split_inclusive('\n')
        .map(|raw| {
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            let line = line.strip_suffix('\r').unwrap_or(line);
            match line
                .split_once(' ')
                .and_then(|(ts, rest)| Some((ts.parse::<Timestamp>().ok()?, rest)))
            {
                Some((at, text)) => {
                    last = at;
                    LogLine {
                        at,
                        text: text.to_string(),
                    }
                }
                None => match line.parse::<Timestamp>() {
                    // A timestamp alone: an empty line.
                    Ok(at) => {
                        last = at;
                        LogLine {
                            at,
                            text: String::new(),
                        }
                    }
                    Err(_) => LogLine {
                        at: last,
                        text: line.to_string(),
                    },
                },
            }
        })
        .collect()
}

/// Truncates a timestamp to the whole second (ECI's `StartTime` precision).
pub fn floor_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Formats a time as ECI's `StartTime` (RFC 3339, UTC, whole seconds).
pub fn eci_start_time(t: Timestamp) -> String {
    floor_to_second(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The lower time bound the options ask for (`sinceTime`, or `sinceSeconds` before `now`).
pub fn since_bound(options: &LogOptions, now: Timestamp) -> Option<Timestamp> {
    match (options.since_time, options.since_seconds) {
        (Some(t), _) => Some(t),
        (None, Some(s)) => {
            let secs = i64::try_from(s).unwrap_or(i64::MAX);
            Some(
                now.checked_sub(jiff::SignedDuration::from_secs(secs))
                    .unwrap_or(Timestamp::MIN),
            )
        }
        (None, None) => None,
    }
}

/// Selects what a one-shot request shows: lines at or after `since`, then the last
/// `tail_lines` of those (the kubelet applies tail after the time filter).
pub fn select(
    lines: &[LogLine],
    since: Option<Timestamp>,
    tail_lines: Option<u64>,
) -> impl Iterator<Item = &LogLine> {
    let first = since.map_or(0, |s| lines.partition_point(|l| l.at < s));
    // Timestamps are non-decreasing in a log, but do not trust that for correctness.
    let kept: Vec<&LogLine> = lines[first..]
        .iter()
        .filter(|l| since.is_none_or(|s| l.at >= s))
        .collect();
    let skip = match tail_lines {
        Some(n) => kept
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    kept.into_iter().skip(skip)
}

/// Renders lines as the kubelet does: `text\n`, or `<RFC 3339 nano> text\n` with
/// `timestamps` (Go's `RFC3339Nano`: trailing zeros of the fraction trimmed, as jiff prints).
pub fn render<'a>(lines: impl IntoIterator<Item = &'a LogLine>, timestamps: bool) -> String {
    let mut out = String::new();
    for l in lines {
        if timestamps {
            out.push_str(&l.at.to_string());
            out.push(' ');
        }
        out.push_str(&l.text);
        out.push('\n');
    }
    out
}

/// `limitBytes` over a whole (possibly followed) stream.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    left: Option<u64>,
}

impl ByteBudget {
    /// A budget of `limit` bytes (`None` = unlimited).
    pub fn new(limit: Option<u64>) -> Self {
        Self { left: limit }
    }

    /// Takes what fits of `text`; the result is empty once the budget is spent. Cuts at a
    /// byte boundary like the kubelet (which limits bytes, not characters).
    pub fn take(&mut self, text: String) -> Bytes {
        let Some(left) = self.left.as_mut() else {
            return Bytes::from(text);
        };
        let mut bytes = text.into_bytes();
        let keep = usize::try_from(*left)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        bytes.truncate(keep);
        *left -= keep as u64;
        Bytes::from(bytes)
    }

    /// True when nothing more may be written.
    pub fn exhausted(&self) -> bool {
        self.left == Some(0)
    }
}

/// What the follow cursor knows: the lines of the log at or after `floor` (a whole second,
/// ECI's `StartTime` precision) that it has already seen, in log order.
///
/// Each poll asks ECI for everything from `floor`; the answer is a suffix of the
/// (append-only) log, so it normally starts with exactly the lines we already hold and
/// continues with the new ones. Comparing sequences (not just timestamps) is what makes
/// lines that share a timestamp — or are identical — come out exactly once. When the
/// answer does not start with what we hold (ECI cut the answer at its `Tail` cap, the log
/// was rotated, lines arrived out of order), the cursor falls back to counting: a line is
/// new if the answer holds more copies of it (same time and text) than we have seen.
#[derive(Debug, Clone, Default)]
pub struct FollowCursor {
    floor: Option<Timestamp>,
    seen: Vec<LogLine>,
    /// Lines before this time are never emitted (the request's `sinceTime`/`sinceSeconds`).
    min_time: Option<Timestamp>,
}

/// The result of feeding one poll to the cursor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advance {
    /// Lines to emit, in order.
    pub new_lines: Vec<LogLine>,
    /// ECI's answer did not line up with what was seen before (see [`FollowCursor`]);
    /// lines may have been lost on ECI's side if the answer was cut at its `Tail` cap.
    pub realigned: bool,
}

impl FollowCursor {
    /// A cursor seeded with the complete answer of the initial request (`lines`, every line
    /// ECI returned, including those the options did not show), never emitting anything
    /// before `min_time`.
    pub fn new(lines: &[LogLine], min_time: Option<Timestamp>) -> Self {
        let mut cursor = Self {
            floor: min_time.map(floor_to_second),
            seen: Vec::new(),
            min_time,
        };
        cursor.remember(lines);
        cursor
    }

    /// The `StartTime` of the next poll (`None`: the whole log).
    pub fn next_start(&self) -> Option<Timestamp> {
        self.floor
    }

    /// Feeds the answer of a poll that asked from [`Self::next_start`].
    pub fn advance(&mut self, answer: Vec<LogLine>) -> Advance {
        // Lines before the floor are older than anything we asked for.
        let answer: Vec<LogLine> = match self.floor {
            Some(f) => answer.into_iter().filter(|l| l.at >= f).collect(),
            None => answer,
        };
        let (fresh, realigned) = if answer.starts_with(&self.seen) {
            (answer[self.seen.len()..].to_vec(), false)
        } else {
            let mut held: HashMap<(&Timestamp, &str), usize> = HashMap::new();
            for l in &self.seen {
                *held.entry((&l.at, l.text.as_str())).or_default() += 1;
            }
            let mut fresh = Vec::new();
            for l in &answer {
                match held.get_mut(&(&l.at, l.text.as_str())) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => fresh.push(l.clone()),
                }
            }
            (fresh, true)
        };
        let mut all = std::mem::take(&mut self.seen);
        all.extend(fresh.iter().cloned());
        self.remember(&all);
        let new_lines = fresh
            .into_iter()
            .filter(|l| self.min_time.is_none_or(|m| l.at >= m))
            .collect();
        Advance {
            new_lines,
            realigned,
        }
    }

    /// Moves the floor to the newest line's second and keeps only the lines at or after it.
    fn remember(&mut self, lines: &[LogLine]) {
        if let Some(newest) = lines.iter().map(|l| l.at).max() {
            let floor = floor_to_second(newest);
            self.floor = Some(self.floor.map_or(floor, |f| f.max(floor)));
        }
        let floor = self.floor;
        self.seen = lines
            .iter()
            .filter(|l| floor.is_none_or(|f| l.at >= f))
            .cloned()
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn line(at: &str, text: &str) -> LogLine {
        LogLine {
            at: t(at),
            text: text.into(),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn parses_eci_content_with_timestamps() {
        let content = "2026-11-25T18:00:00.100000000Z hello world\n2026-11-25T18:00:00.2Z \n2026-11-25T18:00:01Z\nno stamp\n";
        let lines = parse_content(content, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            lines,
            vec![
                line("2026-11-25T18:00:00.1Z", "hello world"),
                line("2026-11-25T18:00:00.2Z", ""),
                line("2026-11-25T18:00:01Z", ""),
                line("2026-11-25T18:00:01Z", "no stamp"),
            ]
        );
        assert!(parse_content("", t("2026-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn start_time_has_whole_seconds() {
        assert_eq!(
            eci_start_time(t("2026-11-25T18:00:05.999Z")),
            "2026-11-25T18:00:05Z"
        );
    }

    #[test]
    fn select_filters_time_exactly_then_tails() {
        let lines = vec![
            line("2026-11-25T18:00:00.1Z", "a"),
            line("2026-11-25T18:00:00.5Z", "b"),
            line("2026-11-25T18:00:00.5Z", "c"),
            line("2026-11-25T18:00:01Z", "d"),
        ];
        let sel = |since: Option<&str>, tail| {
            select(&lines, since.map(t), tail)
                .map(|l| l.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(sel(None, None), ["a", "b", "c", "d"]);
        assert_eq!(sel(Some("2026-11-25T18:00:00.5Z"), None), ["b", "c", "d"]);
        assert_eq!(sel(Some("2026-11-25T18:00:00.5Z"), Some(2)), ["c", "d"]);
        assert_eq!(sel(None, Some(0)), Vec::<String>::new());
        assert_eq!(sel(None, Some(10)), ["a", "b", "c", "d"]);
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        let now = t("2026-11-25T18:00:10Z");
        let o = LogOptions {
            since_seconds: Some(4),
            ..LogOptions::default()
        };
        assert_eq!(since_bound(&o, now), Some(t("2026-11-25T18:00:06Z")));
        let o = LogOptions {
            since_seconds: Some(u64::MAX),
            ..LogOptions::default()
        };
        assert_eq!(since_bound(&o, now), Some(Timestamp::MIN));
    }

    #[test]
    fn render_with_and_without_timestamps() {
        let lines = [line("2026-11-25T18:00:00.120Z", "x")];
        assert_eq!(render(&lines, false), "x\n");
        assert_eq!(render(&lines, true), "2026-11-25T18:00:00.12Z x\n");
    }

    #[test]
    fn byte_budget_spans_chunks() {
        let mut b = ByteBudget::new(Some(5));
        assert_eq!(b.take("abc".into()), Bytes::from("abc"));
        assert!(!b.exhausted());
        assert_eq!(b.take("defg".into()), Bytes::from("de"));
        assert!(b.exhausted());
        assert_eq!(b.take("h".into()), Bytes::new());
        let mut unlimited = ByteBudget::new(None);
        assert_eq!(unlimited.take("abc".into()).len(), 3);
        assert!(!unlimited.exhausted());
    }

    /// A fake ECI: an append-only log answering "everything at or after StartTime
    /// (whole seconds), at most `cap` lines (the last ones)".
    struct FakeLog {
        lines: Vec<LogLine>,
        cap: usize,
    }
    impl FakeLog {
        fn answer(&self, start: Option<Timestamp>) -> Vec<LogLine> {
            let start = start.map(floor_to_second);
            let v: Vec<LogLine> = self
                .lines
                .iter()
                .filter(|l| start.is_none_or(|s| l.at >= s))
                .cloned()
                .collect();
            let skip = v.len().saturating_sub(self.cap);
            v[skip..].to_vec()
        }
    }

    #[test]
    fn follow_emits_each_line_once_when_lines_share_a_timestamp() {
        let mut log = FakeLog {
            lines: vec![line("2026-11-25T18:00:00.5Z", "x")],
            cap: 2000,
        };
        let mut cursor = FollowCursor::new(&log.answer(None), None);
        let mut out = Vec::new();
        // Identical lines at the same instant arrive across three polls.
        log.lines.push(line("2026-11-25T18:00:00.5Z", "x"));
        out.extend(cursor.advance(log.answer(cursor.next_start())).new_lines);
        out.extend(cursor.advance(log.answer(cursor.next_start())).new_lines); // nothing new
        log.lines.push(line("2026-11-25T18:00:00.5Z", "x"));
        log.lines.push(line("2026-11-25T18:00:00.7Z", "y"));
        out.extend(cursor.advance(log.answer(cursor.next_start())).new_lines);
        log.lines.push(line("2026-11-25T18:00:01.0Z", "z"));
        log.lines.push(line("2026-11-25T18:00:01.0Z", "z"));
        let a = cursor.advance(log.answer(cursor.next_start()));
        assert!(!a.realigned);
        out.extend(a.new_lines);
        assert_eq!(texts(&out), ["x", "x", "y", "z", "z"]);
        // The window moved to the newest second; older lines are no longer held.
        assert_eq!(cursor.next_start(), Some(t("2026-11-25T18:00:01Z")));
        assert_eq!(cursor.seen.len(), 2);
    }

    #[test]
    fn follow_after_a_tail_does_not_replay_lines_the_tail_hid() {
        let log = FakeLog {
            lines: (0..5)
                .map(|i| line("2026-11-25T18:00:00.5Z", &format!("l{i}")))
                .collect(),
            cap: 2000,
        };
        // The initial request shows the last 2, but the cursor is seeded with all lines.
        let initial = log.answer(None);
        let shown: Vec<_> = select(&initial, None, Some(2)).cloned().collect();
        assert_eq!(texts(&shown), ["l3", "l4"]);
        let mut cursor = FollowCursor::new(&initial, None);
        assert!(
            cursor
                .advance(log.answer(cursor.next_start()))
                .new_lines
                .is_empty()
        );
    }

    #[test]
    fn follow_never_emits_before_since_even_inside_the_floor_second() {
        let mut log = FakeLog {
            lines: vec![line("2026-11-25T18:00:00.2Z", "old")],
            cap: 2000,
        };
        let since = t("2026-11-25T18:00:00.5Z");
        let initial = log.answer(Some(since));
        assert!(select(&initial, Some(since), None).next().is_none());
        let mut cursor = FollowCursor::new(&initial, Some(since));
        log.lines.push(line("2026-11-25T18:00:00.9Z", "new"));
        let a = cursor.advance(log.answer(cursor.next_start()));
        assert_eq!(texts(&a.new_lines), ["new"]);
    }

    #[test]
    fn follow_from_an_empty_log_emits_everything_that_appears() {
        let mut log = FakeLog {
            lines: vec![],
            cap: 2000,
        };
        let mut cursor = FollowCursor::new(&log.answer(None), None);
        assert_eq!(cursor.next_start(), None);
        log.lines.push(line("2026-11-25T18:00:03Z", "first"));
        assert_eq!(
            texts(&cursor.advance(log.answer(cursor.next_start())).new_lines),
            ["first"]
        );
    }

    #[test]
    fn follow_realigns_when_eci_cuts_the_answer_at_its_cap() {
        let mut log = FakeLog {
            lines: vec![line("2026-11-25T18:00:00.1Z", "a")],
            cap: 2,
        };
        let mut cursor = FollowCursor::new(&log.answer(None), None);
        // Three lines in the same second: ECI returns only the last two; "a" and "b" are
        // cut. The cursor cannot recover "b" (ECI never returns it) but must not emit
        // duplicates or lose what it does get.
        log.lines.push(line("2026-11-25T18:00:00.2Z", "b"));
        log.lines.push(line("2026-11-25T18:00:00.3Z", "c"));
        log.lines.push(line("2026-11-25T18:00:00.4Z", "d"));
        let a = cursor.advance(log.answer(cursor.next_start()));
        assert!(a.realigned);
        assert_eq!(texts(&a.new_lines), ["c", "d"]);
        let again = cursor.advance(log.answer(cursor.next_start()));
        assert!(again.new_lines.is_empty(), "{again:?}");
    }

    #[test]
    fn follow_matches_a_simulated_writer_exactly() {
        // A deterministic writer appending bursts of lines with coarse (10 ms) timestamps,
        // many identical, polled between bursts: the concatenated output is the log.
        let mut log = FakeLog {
            lines: vec![],
            cap: 2000,
        };
        let base = t("2026-11-25T18:00:00Z");
        let mut cursor = FollowCursor::new(&[], None);
        let mut out = Vec::new();
        let mut clock_ms = 0i64;
        let mut seed = 17u64;
        for _round in 0..200 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let burst = (seed >> 33) % 7;
            for _ in 0..burst {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                clock_ms += ((seed >> 40) % 3) as i64 * 10; // often the same instant
                let text = format!("v{}", (seed >> 50) % 3); // often the same text
                log.lines.push(LogLine {
                    at: base + jiff::SignedDuration::from_millis(clock_ms),
                    text,
                });
            }
            out.extend(cursor.advance(log.answer(cursor.next_start())).new_lines);
        }
        assert!(log.lines.len() > 300);
        assert_eq!(out, log.lines);
    }
}

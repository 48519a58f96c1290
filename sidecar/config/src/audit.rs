//! The part of the audit trail (docs/audit.md) that the sidecar and the injector share: the schema
//! name, the `tracing` target, the record's timestamp, and the layer that writes records out. Each
//! program has its own typed record (`sidecar/src/audit.rs`, `injector/src/audit.rs`) and emits it
//! with [`emit`] as one `tracing` event on [`TARGET`] whose only field, [`FIELD`], is the record's
//! JSON. [`layer`] is installed by each `main` beside the log layer and writes exactly that JSON,
//! one line per record, to the writer it is given (stdout), whatever the log format; [`hide`] takes
//! the target out of the log filter so a record is not printed twice. The log filter (`HUSH_LOG`,
//! `RUST_LOG`) therefore never drops a record: only the operator's `audit: false` does, in the
//! programs themselves. It lives here because both programs link this crate and nothing else in
//! common that may depend on `tracing`.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The `tracing` target of every audit record.
pub const TARGET: &str = "hush::audit";
/// The `schema` field of every record; a change that is not purely additive bumps it.
pub const SCHEMA: &str = "hush.audit/v1";
/// The field of the audit event that holds the record's JSON.
pub const FIELD: &str = "record";

/// Emits `record` as one audit event. A record that cannot be serialised (plain strings and
/// numbers: it cannot happen) is reported as an error log instead of being lost silently.
pub fn emit<T: Serialize>(record: &T) {
    match serde_json::to_string(record) {
        Ok(line) => tracing::info!(target: TARGET, record = line.as_str()),
        Err(e) => tracing::error!(error = %e, "an audit record could not be serialised"),
    }
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-30T18:05:09.123Z`).
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 UTC with milliseconds; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The log filter without the audit target: records are written by [`layer`] only.
pub fn hide(filter: EnvFilter) -> EnvFilter {
    match format!("{TARGET}=off").parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// The layer that writes each audit record to `writer` as one JSON line, and nothing else. It
/// has its own filter (the audit target at info), so the log filter cannot drop records.
pub fn layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    AuditLayer { writer }.with_filter(Targets::new().with_target(TARGET, Level::INFO))
}

/// A subscriber with only the audit [`layer`]: for tests that capture records.
pub fn subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(layer(writer))
}

struct AuditLayer<W> {
    writer: W,
}

/// Picks the record's JSON out of the event.
#[derive(Default)]
struct RecordField(Option<String>);

impl Visit for RecordField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == FIELD {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut field = RecordField::default();
        event.record(&mut field);
        if let Some(mut line) = field.0 {
            line.push('\n');
            // One write per record so concurrent records never interleave within a line; a
            // failed write (a closed stdout) has nowhere better to be reported.
            let _ = self.writer.make_writer().write_all(line.as_bytes());
        }
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_061_909_123);
        assert_eq!(rfc3339(t), "2026-11-30T18:05:09.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn only_records_are_written_one_json_line_each() {
        let buf = Buf::default();
        tracing::subscriber::with_default(subscriber(buf.clone()), || {
            tracing::info!("a log line");
            tracing::info!(target: "hush_sidecar", record = "{\"not\":\"audit\"}");
            emit(&serde_json::json!({"schema": SCHEMA, "n": 1}));
            emit(&serde_json::json!({"schema": SCHEMA, "n": 2}));
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[1]["n"], 2);
        assert_eq!(lines[0]["schema"], SCHEMA);
    }
}

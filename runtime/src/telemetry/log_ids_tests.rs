use super::*;
use opentelemetry::trace::{TraceFlags, TraceState};
use std::sync::{Arc, Mutex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SERVER: &str = "00f067aa0ba902b7";
const CALL: &str = "b7ad6b7169203331";

fn ids(span: &str) -> TraceIds {
    TraceIds::of(&SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(span).unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    ))
}

/// Collects what the formatter writes.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().expect("lock").clone())
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A line outside any trace, one in the request, one in a guest call
/// inside it, and one in the request again, through `subscriber`.
fn log(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside");
        scoped(ids(SERVER), || {
            tracing::info!(n = 1, "in the request");
            scoped(ids(CALL), || tracing::warn!(guest = "b", "in the call"));
            tracing::info!("in the request again");
        });
        tracing::info!("after");
    });
}

#[test]
fn text_lines_inside_a_trace_end_with_its_ids() {
    for ansi in [false, true] {
        let lines = Lines::default();
        let writer = lines.clone();
        log(tracing_subscriber::fmt()
            .with_ansi(ansi)
            .without_time()
            .with_writer(TraceIdsWriter::new(move || writer.clone(), LogFormat::Text))
            .finish());
        let text = lines.text();
        assert_eq!(text.len(), 5, "{text:?}");
        let server = format!(" trace_id={TRACE} span_id={SERVER}");
        let call = format!(" trace_id={TRACE} span_id={CALL}");
        assert!(!text[0].contains("trace_id"), "{}", text[0]);
        assert!(text[1].contains("in the request"), "{}", text[1]);
        assert!(text[1].ends_with(&server), "{}", text[1]);
        assert!(text[2].ends_with(&call), "{}", text[2]);
        assert!(text[3].ends_with(&server), "{}", text[3]);
        assert!(!text[4].contains("trace_id"), "{}", text[4]);
    }
}

#[test]
fn json_lines_inside_a_trace_get_the_ids_as_members() {
    let lines = Lines::default();
    let writer = lines.clone();
    log(tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_writer(TraceIdsWriter::new(move || writer.clone(), LogFormat::Json))
        .finish());
    let parsed: Vec<serde_json::Value> = lines
        .text()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(parsed.len(), 5);
    assert_eq!(parsed[0].get("trace_id"), None);
    assert_eq!(parsed[1]["trace_id"], TRACE);
    assert_eq!(parsed[1]["span_id"], SERVER);
    assert_eq!(parsed[1]["fields"]["message"], "in the request");
    assert_eq!(parsed[1]["fields"]["n"], 1);
    assert_eq!(parsed[2]["span_id"], CALL);
    assert_eq!(parsed[2]["fields"]["guest"], "b");
    assert_eq!(parsed[3]["span_id"], SERVER);
    assert_eq!(parsed[4].get("trace_id"), None);
}

#[test]
fn what_is_not_a_whole_line_is_written_as_it_is() {
    let lines = Lines::default();
    let sink = lines.clone();
    let make = TraceIdsWriter::new(move || sink.clone(), LogFormat::Json);
    let mut writer = make.make_writer();
    scoped(ids(SERVER), || {
        io::Write::write_all(&mut writer, b"{\"a\":1}").unwrap();
        io::Write::write_all(&mut writer, b"not json\n").unwrap();
        io::Write::write_all(&mut writer, b"{}\n").unwrap();
    });
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text,
        format!("{{\"a\":1}}not json\n{{\"trace_id\":\"{TRACE}\",\"span_id\":\"{SERVER}\"}}\n")
    );
}

#[test]
fn the_current_trace_id_is_the_scoped_ones() {
    assert_eq!(current_trace_id(), None);
    assert_eq!(scoped(ids(CALL), current_trace_id), Some(TRACE.to_owned()));
    assert_eq!(scoped(ids(SERVER), current), Some(ids(SERVER)));
    assert_eq!(current(), None);
}

//! How a request trace looks (`--trace`, `TRACING ON`): a table of the
//! coordinator's steps, as cqlsh prints its tracing session, or JSON.

use ringkv_client::RequestTrace;
use serde_json::json;

use crate::format::table;

fn millis(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The trace for people.
pub fn text(trace: &RequestTrace) -> String {
    let mut rows = vec![vec![
        "elapsed ms".to_owned(),
        "node".to_owned(),
        "activity".to_owned(),
    ]];
    rows.extend(trace.events.iter().map(|event| {
        vec![
            format!("{:>10}", millis(event.elapsed)),
            event.node.clone(),
            event.activity.clone(),
        ]
    }));
    format!(
        "Tracing session: coordinator {}, {} ms in total\n\n{}",
        trace.coordinator,
        millis(trace.total),
        table(&rows)
    )
}

/// The trace for scripts.
pub fn json(trace: &RequestTrace) -> serde_json::Value {
    json!({
        "coordinator": trace.coordinator,
        "total_micros": trace.total.as_micros() as u64,
        "events": trace.events.iter().map(|event| json!({
            "elapsed_micros": event.elapsed.as_micros() as u64,
            "node": event.node,
            "activity": event.activity,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_client::TraceEvent;
    use std::time::Duration;

    #[test]
    fn a_trace_reads_as_a_table_of_steps() {
        let trace = RequestTrace {
            coordinator: "n1".into(),
            total: Duration::from_micros(2345),
            events: vec![
                TraceEvent {
                    elapsed: Duration::from_micros(12),
                    node: "n1".into(),
                    activity: "reading at QUORUM".into(),
                },
                TraceEvent {
                    elapsed: Duration::from_micros(1500),
                    node: "n3".into(),
                    activity: "answered with a digest in 1.000 ms".into(),
                },
            ],
        };
        let shown = text(&trace);
        assert!(shown.starts_with("Tracing session: coordinator n1, 2.345 ms in total"));
        assert!(
            shown.contains("     1.500  n3    answered with a digest"),
            "{shown}"
        );
        assert_eq!(json(&trace)["events"][1]["node"], "n3");
    }
}

//! Tables as `kubectl get` prints them: NAME (NAMESPACE first across namespaces), then the
//! kind's printer columns, values from their JSONPath, dates as ages, columns three spaces apart.

use jiff::Timestamp;
use serde_json::Value;

use crate::jsonpath;
use crate::kinds::{Column, KindDef};

/// The rows of one kind's table.
#[derive(Debug, Clone)]
pub struct Printer {
    columns: Vec<(Column, Vec<jsonpath::Step>)>,
    namespace_column: bool,
}

impl Printer {
    /// `wide` adds the columns of priority above 0; `all_namespaces` the NAMESPACE column
    /// (never for a cluster-scoped kind).
    pub fn new(kind: &KindDef, wide: bool, all_namespaces: bool) -> Printer {
        let columns = kind
            .columns
            .iter()
            .filter(|c| wide || c.priority == 0)
            // A path this build cannot read shows as an empty column rather than failing `get`.
            .map(|c| (c.clone(), jsonpath::parse(&c.json_path).unwrap_or_default()))
            .collect();
        Printer {
            columns,
            namespace_column: all_namespaces && kind.info.namespaced,
        }
    }

    pub fn header(&self) -> Vec<String> {
        let mut row = Vec::with_capacity(self.columns.len() + 2);
        if self.namespace_column {
            row.push("NAMESPACE".to_owned());
        }
        row.push("NAME".to_owned());
        row.extend(self.columns.iter().map(|(c, _)| c.name.to_uppercase()));
        row
    }

    pub fn row(&self, obj: &Value, now: Timestamp) -> Vec<String> {
        let meta = |field: &str| {
            obj.pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut row = Vec::with_capacity(self.columns.len() + 2);
        if self.namespace_column {
            row.push(meta("namespace"));
        }
        row.push(meta("name"));
        for (column, steps) in &self.columns {
            let found = if steps.is_empty() {
                Vec::new()
            } else {
                jsonpath::eval(obj, steps)
            };
            row.push(cell(&found, &column.type_, now));
        }
        row
    }
}

/// One cell: empty when the path finds nothing (as kubectl), several values comma-joined.
pub fn cell(values: &[&Value], type_: &str, now: Timestamp) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) if type_ == "date" => age_since(s, now),
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How long ago an RFC 3339 timestamp was, as kubectl's AGE (`<unknown>` if unreadable).
pub fn age_since(timestamp: &str, now: Timestamp) -> String {
    match timestamp.parse::<Timestamp>() {
        Ok(t) => human_duration(now.as_second() - t.as_second()),
        Err(_) => "<unknown>".to_owned(),
    }
}

/// kubectl's short durations: precise while small (`90s`, `5m30s`, `3h15m`, `2d4h`), coarse
/// later (`45m`, `20h`, `30d`, `3y`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    let secs = secs.max(0);
    let (minutes, hours) = (secs / 60, secs / 3600);
    let days = hours / 24;
    let years = days / 365;
    let two_parts = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if minutes < 10 => two_parts(minutes, "m", secs % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => two_parts(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => two_parts(days, "d", hours % 24, "h"),
        _ if years < 2 => format!("{days}d"),
        _ if years < 8 => two_parts(years, "y", days % 365, "d"),
        _ => format!("{years}y"),
    }
}

/// Column widths that only grow, so rows printed later (by `--watch`) line up with the first.
#[derive(Debug, Clone, Default)]
pub struct Widths(Vec<usize>);

/// Blank between two columns, as kubectl's tabwriter pads.
const GAP: usize = 3;

impl Widths {
    pub fn fit(&mut self, row: &[String]) {
        if self.0.len() < row.len() {
            self.0.resize(row.len(), 0);
        }
        for (w, cell) in self.0.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    /// The row as one line (no trailing blanks), each cell padded to its column.
    pub fn line(&self, row: &[String]) -> String {
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let width = self.0.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count()) + GAP;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// Rows (the header first) as aligned lines, each ending in a newline.
pub fn render(rows: &[Vec<String>], widths: &mut Widths) -> String {
    for row in rows {
        widths.fit(row);
    }
    rows.iter()
        .map(|r| widths.line(r) + "\n")
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (12 * 60 + 30, "12m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 15 * 60, "3h15m"),
            (20 * 3600, "20h"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (5 * 86400, "5d"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
        assert_eq!(age_since("2025-06-01T11:59:15Z", now()), "45s");
        assert_eq!(age_since("yesterday", now()), "<unknown>");
    }

    #[test]
    fn cells_format_each_type_and_leave_missing_values_empty() {
        assert_eq!(cell(&[], "string", now()), "");
        assert_eq!(cell(&[&json!(2)], "integer", now()), "2");
        assert_eq!(cell(&[&json!(true)], "boolean", now()), "true");
        assert_eq!(cell(&[&json!("a"), &json!("b")], "string", now()), "a,b");
        assert_eq!(cell(&[&json!("2025-06-01T09:00:00Z")], "date", now()), "3h");
    }

    fn vm() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "team-a",
                         "creationTimestamp": "2025-06-01T11:48:00Z"},
            "spec": {"cpu": 2, "memoryMiB": 512, "image": "debian",
                     "scheduling": {"qosClass": "Guaranteed"}},
            "status": {"phase": "Running", "host": "rack1-h3"}
        })
    }

    #[test]
    fn the_vm_table_has_kubectls_columns_and_alignment() {
        let kinds = Kinds::builtin();
        let p = Printer::new(kinds.resolve("vm").unwrap(), false, false);
        let mut pending = vm();
        pending["metadata"]["name"] = json!("db");
        pending["status"] = json!({});
        let rows = [p.header(), p.row(&vm(), now()), p.row(&pending, now())];
        let text = render(&rows, &mut Widths::default());
        assert_eq!(
            text,
            "NAME    PHASE     HOST       CPU   MEMORY   IMAGE    AGE\n\
             web-1   Running   rack1-h3   2     512      debian   12m\n\
             db                           2     512      debian   12m\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces_add_their_columns() {
        let kinds = Kinds::builtin();
        let p = Printer::new(kinds.resolve("vm").unwrap(), true, true);
        assert_eq!(
            p.header(),
            [
                "NAMESPACE",
                "NAME",
                "PHASE",
                "HOST",
                "CPU",
                "MEMORY",
                "IMAGE",
                "QOS",
                "AGE"
            ]
        );
        assert_eq!(p.row(&vm(), now())[..2], ["team-a", "web-1"]);
        assert_eq!(p.row(&vm(), now())[7], "Guaranteed");
        // A cluster-scoped kind has no namespace to show.
        let hosts = Printer::new(kinds.resolve("host").unwrap(), false, true);
        assert_eq!(hosts.header()[0], "NAME");
    }

    #[test]
    fn widths_only_grow_so_later_rows_line_up() {
        let mut w = Widths::default();
        let first = render(&[vec!["NAME".into(), "CPU".into()]], &mut w);
        assert_eq!(first, "NAME   CPU\n");
        assert_eq!(w.line(&["a".into(), "1".into()]), "a      1");
        w.fit(&["longer-name".into(), "2".into()]);
        assert_eq!(w.line(&["a".into(), "1".into()]), "a             1");
    }
}

//! How `get` shows objects, first all at once and then (with `--watch`) one change at a time,
//! in the format `-o` asked for.

use jiff::Timestamp;
use serde_json::Value;

use crate::cli::Output;
use crate::kinds::KindDef;
use crate::output;
use crate::table::{Printer, Widths};

#[derive(Debug)]
pub struct View<'k> {
    kind: &'k KindDef,
    output: Option<Output>,
    printer: Printer,
    widths: Widths,
    /// Whether the table header (or a first YAML document) has been printed.
    started: bool,
}

impl<'k> View<'k> {
    pub fn new(kind: &'k KindDef, output: Option<Output>, all_namespaces: bool) -> View<'k> {
        View {
            kind,
            output,
            printer: Printer::new(kind, output == Some(Output::Wide), all_namespaces),
            widths: Widths::default(),
            started: false,
        }
    }

    /// Whether the format is a table or names, for which an empty result is reported on stderr
    /// (YAML and JSON print an empty List instead).
    pub fn reports_empty(&self) -> bool {
        !matches!(self.output, Some(Output::Yaml | Output::Json))
    }

    /// The objects of a `get`: `single` when one object was asked for by name (YAML and JSON
    /// then print it alone, not in a List).
    pub fn objects(&mut self, items: &[Value], single: bool, now: Timestamp) -> String {
        match self.output {
            Some(Output::Yaml) | Some(Output::Json) => {
                self.started = true;
                let doc = match items {
                    [one] if single => one.clone(),
                    _ => output::list(items.to_vec()),
                };
                self.document(&doc)
            }
            Some(Output::Name) => items.iter().map(|o| self.name_line(o)).collect(),
            None | Some(Output::Wide) => self.rows(items, now),
        }
    }

    /// One changed object, as `--watch` prints it.
    pub fn change(&mut self, obj: &Value, now: Timestamp) -> String {
        match self.output {
            Some(Output::Yaml) if self.started => format!("---\n{}", output::yaml(obj)),
            Some(Output::Yaml) | Some(Output::Json) => {
                self.started = true;
                self.document(obj)
            }
            Some(Output::Name) => self.name_line(obj),
            None | Some(Output::Wide) => self.rows(std::slice::from_ref(obj), now),
        }
    }

    fn document(&self, doc: &Value) -> String {
        match self.output {
            Some(Output::Json) => output::json(doc),
            _ => output::yaml(doc),
        }
    }

    fn name_line(&self, obj: &Value) -> String {
        output::name(self.kind, obj) + "\n"
    }

    /// Table rows, preceded by the header the first time.
    fn rows(&mut self, items: &[Value], now: Timestamp) -> String {
        if items.is_empty() {
            return String::new();
        }
        let mut rows = Vec::with_capacity(items.len() + 1);
        if !self.started {
            rows.push(self.printer.header());
            self.started = true;
        }
        rows.extend(items.iter().map(|o| self.printer.row(o, now)));
        crate::table::render(&rows, &mut self.widths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;
    use serde_json::json;

    fn vm(name: &str, cpu: u32) -> Value {
        json!({"metadata": {"name": name}, "spec": {"cpu": cpu, "image": "img"}})
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn a_watch_prints_the_header_once_then_a_row_per_change() {
        let kinds = Kinds::builtin();
        let mut v = View::new(kinds.resolve("vm").unwrap(), None, false);
        let first = v.objects(&[vm("a", 1)], false, now());
        assert!(first.starts_with("NAME"), "{first}");
        assert_eq!(first.lines().count(), 2);
        let next = v.change(&vm("a", 2), now());
        assert_eq!(next.lines().count(), 1);
        assert!(next.starts_with("a "), "{next}");
    }

    #[test]
    fn an_empty_watch_prints_the_header_with_the_first_change() {
        let kinds = Kinds::builtin();
        let mut v = View::new(kinds.resolve("vm").unwrap(), None, false);
        assert_eq!(v.objects(&[], false, now()), "");
        assert_eq!(v.change(&vm("a", 1), now()).lines().count(), 2);
    }

    #[test]
    fn yaml_is_one_object_by_name_else_a_list_and_watch_documents_are_separated() {
        let kinds = Kinds::builtin();
        let kind = kinds.resolve("vm").unwrap();
        let mut v = View::new(kind, Some(Output::Yaml), false);
        let one: Value = serde_yaml::from_str(&v.objects(&[vm("a", 1)], true, now())).unwrap();
        assert_eq!(one["metadata"]["name"], "a");
        let list: Value = serde_yaml::from_str(&v.objects(&[vm("a", 1)], false, now())).unwrap();
        assert_eq!(list["kind"], "List");
        assert!(v.change(&vm("a", 2), now()).starts_with("---\n"));

        let mut n = View::new(kind, Some(Output::Name), false);
        assert_eq!(
            n.objects(&[vm("a", 1), vm("b", 1)], false, now()),
            "virtualmachine.yun.dev/a\nvirtualmachine.yun.dev/b\n"
        );
    }
}

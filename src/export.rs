//! The export file sink: rows, as they are read page by page, streamed into a CSV, a JSON
//! array or JSON Lines file, without ever holding more than one row.
//!
//! The rows go to a temporary file in the destination's directory, which is fsynced and
//! renamed over the destination only when every row is in: a reader (or a cron job's next
//! step) sees the old file or the whole new one, never half of it. Like
//! [`crate::util::atomic_write`], a FIFO, device node or symlink at the destination is
//! refused rather than replaced. What the rows hold is the Esper adapter's business
//! (`esper::adapter::export`); this module only knows columns and values.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::job::ExportFormat;

/// One row: values by column, in the sink's column order.
pub type Row = Vec<Value>;

/// Told the number of rows written so far.
pub type RowsHook = Box<dyn FnMut(u64) + Send>;

/// An export file being written.
pub struct Sink {
    dest: PathBuf,
    format: ExportFormat,
    columns: Vec<String>,
    out: Out,
    rows: u64,
    /// JSON rows leave out null values (a block to paste back, not a table).
    sparse: bool,
    /// Told the row count every `every` rows (progress by pages).
    on_rows: Option<(u64, RowsHook)>,
}

enum Out {
    Csv(Box<csv::Writer<BufWriter<tempfile::NamedTempFile>>>),
    Json(BufWriter<tempfile::NamedTempFile>),
}

impl Sink {
    /// Starts `dest` (its directory is created) with these columns; CSV writes the header
    /// now, so an export with no rows still has one.
    pub fn create(
        dest: &Path,
        format: ExportFormat,
        columns: Vec<String>,
    ) -> std::io::Result<Sink> {
        crate::util::check_writable(dest)?;
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let tmp = BufWriter::new(tempfile::NamedTempFile::new_in(dir)?);
        let out = match format {
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(tmp);
                w.write_record(&columns).map_err(csv_io)?;
                Out::Csv(Box::new(w))
            }
            ExportFormat::Json => {
                let mut w = tmp;
                w.write_all(b"[")?;
                Out::Json(w)
            }
            ExportFormat::Jsonl => Out::Json(tmp),
        };
        Ok(Sink {
            dest: dest.to_path_buf(),
            format,
            columns,
            out,
            rows: 0,
            sparse: false,
            on_rows: None,
        })
    }

    /// Calls `f` with the row count after every `every` rows.
    pub fn on_rows(&mut self, every: u64, f: impl FnMut(u64) + Send + 'static) {
        self.on_rows = Some((every.max(1), Box::new(f)));
    }

    /// JSON and JSON Lines rows leave out the columns whose value is null.
    pub fn sparse(&mut self) {
        self.sparse = true;
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Appends one row (missing trailing values are empty).
    pub fn row(&mut self, row: &[Value]) -> std::io::Result<()> {
        let value = |i: usize| row.get(i).unwrap_or(&Value::Null);
        match &mut self.out {
            Out::Csv(w) => {
                let cells: Vec<String> = (0..self.columns.len()).map(|i| cell(value(i))).collect();
                w.write_record(&cells).map_err(csv_io)?;
            }
            Out::Json(w) => {
                if self.format == ExportFormat::Json {
                    w.write_all(if self.rows == 0 { b"\n  " } else { b",\n  " })?;
                }
                // Written by hand so the keys keep the column order.
                w.write_all(b"{")?;
                let mut first = true;
                for (i, c) in self.columns.iter().enumerate() {
                    if self.sparse && value(i).is_null() {
                        continue;
                    }
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut *w, c)?;
                    w.write_all(b":")?;
                    serde_json::to_writer(&mut *w, value(i))?;
                }
                w.write_all(b"}")?;
                if self.format == ExportFormat::Jsonl {
                    w.write_all(b"\n")?;
                }
            }
        }
        self.rows += 1;
        if let Some((every, f)) = &mut self.on_rows
            && self.rows.is_multiple_of(*every)
        {
            f(self.rows);
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes, fsyncs and renames the file into place; returns its path and row count.
    pub fn finish(self) -> std::io::Result<(PathBuf, u64)> {
        let mut w = match self.out {
            Out::Csv(w) => w.into_inner().map_err(|e| e.into_error())?,
            Out::Json(mut w) => {
                if self.format == ExportFormat::Json {
                    w.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                }
                w
            }
        };
        w.flush()?;
        let tmp = w.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.dest).map_err(|e| e.error)?;
        Ok((self.dest, self.rows))
    }
}

/// A value as one CSV cell: text as it is, nothing for null, lists of plain values joined
/// with `;`, anything else as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(";")
        }
        other => other.to_string(),
    }
}

fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// The value at a dotted path (`hardwareInfo.serialNumber`, `groups.0`) inside `v`.
pub fn at_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for key in path.split('.') {
        cur = match cur {
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            other => other.get(key)?,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(format: ExportFormat, rows: &[Row]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let mut s = Sink::create(&dest, format, vec!["id".into(), "tags".into()]).unwrap();
        for r in rows {
            s.row(r).unwrap();
        }
        let (path, n) = s.finish().unwrap();
        assert_eq!(n, rows.len() as u64);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn each_format_writes_every_row_in_column_order() {
        let rows = vec![
            vec![json!("a"), json!(["x", "y"])],
            vec![json!("b,c"), Value::Null],
        ];
        assert_eq!(
            write(ExportFormat::Csv, &rows),
            "id,tags\na,x;y\n\"b,c\",\n"
        );
        assert_eq!(
            write(ExportFormat::Jsonl, &rows),
            "{\"id\":\"a\",\"tags\":[\"x\",\"y\"]}\n{\"id\":\"b,c\",\"tags\":null}\n"
        );
        let json: Value = serde_json::from_str(&write(ExportFormat::Json, &rows)).unwrap();
        assert_eq!(json[1]["id"], "b,c");
        let empty: Value = serde_json::from_str(&write(ExportFormat::Json, &[])).unwrap();
        assert_eq!(empty, json!([]));
        assert_eq!(
            write(ExportFormat::Csv, &[]),
            "id,tags\n",
            "the header alone"
        );
    }

    #[test]
    fn nothing_is_at_the_destination_until_finish() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.csv");
        let mut s = Sink::create(&dest, ExportFormat::Csv, vec!["id".into()]).unwrap();
        s.row(&[json!("1")]).unwrap();
        assert!(!dest.exists());
        drop(s);
        assert!(!dest.exists(), "an abandoned export leaves nothing behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn progress_hears_of_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sink::create(
            &dir.path().join("x.jsonl"),
            ExportFormat::Jsonl,
            vec!["id".into()],
        )
        .unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        s.on_rows(2, move |n| log.lock().unwrap().push(n));
        for i in 0..5 {
            s.row(&[json!(i)]).unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), [2, 4]);
    }

    #[test]
    fn dotted_paths() {
        let v = json!({"a": {"b": [1, {"c": "x"}]}});
        assert_eq!(at_path(&v, "a.b.1.c"), Some(&json!("x")));
        assert_eq!(at_path(&v, "a.z"), None);
    }
}

//! Docker's table and `--format` output for list commands: Go's
//! `tabwriter` as the Docker CLI configures it (minimum width 10, padding
//! 3), and `table`/`json`/template format strings.

use serde_json::{Map, Value};

use crate::template::Template;

/// Lays out tab-separated rows as Go's `tabwriter.NewWriter(out, 10, 1,
/// 3, ' ', 0)` does: every column but the last is padded to its widest
/// cell plus 3, and at least 10.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let width = cell.chars().count() + 3;
            if widths.len() <= i {
                widths.resize(i + 1, 10);
            }
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width);
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = widths.get(i).copied().unwrap_or(10);
                out.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push('\n');
    }
    out
}

/// How a list command prints its rows.
pub enum RowFormat {
    /// A table with a header (`table` or `table TEMPLATE`).
    Table(Template),
    /// One JSON object per row.
    Json,
    /// A template per row, no header.
    Raw(Template),
}

impl RowFormat {
    /// Parses a `--format` value; `default_table` is the command's own
    /// table template.
    pub fn parse(format: Option<&str>, default_table: &str) -> anyhow::Result<Self> {
        let format = format.unwrap_or("table");
        if format == "json" {
            return Ok(Self::Json);
        }
        if format == "table" {
            return Ok(Self::Table(Template::parse(default_table)?));
        }
        if let Some(rest) = format.strip_prefix("table ") {
            return Ok(Self::Table(Template::parse_flag(rest)?));
        }
        Ok(Self::Raw(Template::parse_flag(format)?))
    }

    /// Renders rows: each row is an object of the command's fields, and
    /// `headers` maps each field to its column title.
    pub fn render(
        &self,
        headers: &Map<String, Value>,
        rows: &[Map<String, Value>],
    ) -> anyhow::Result<String> {
        match self {
            Self::Json => {
                let mut out = String::new();
                for row in rows {
                    out.push_str(&serde_json::to_string(row)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Self::Raw(template) => {
                let mut out = String::new();
                for row in rows {
                    out.push_str(&template.execute(&Value::Object(row.clone()))?);
                    out.push('\n');
                }
                Ok(out)
            }
            Self::Table(template) => {
                let mut text = template.execute(&Value::Object(headers.clone()))?;
                text.push('\n');
                for row in rows {
                    text.push_str(&template.execute(&Value::Object(row.clone()))?);
                    text.push('\n');
                }
                Ok(tabwrite(&text))
            }
        }
    }
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05 +0000 UTC`.
pub fn go_time(timestamp: jiff::Timestamp) -> String {
    timestamp
        .strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
        .to_string()
}

/// Parses an RFC 3339 creation time from an image config.
pub fn parse_created(created: Option<&str>) -> Option<jiff::Timestamp> {
    created?.parse::<jiff::Timestamp>().ok()
}

/// `"2 hours ago"`, as Docker prints creation times.
pub fn since(created: Option<jiff::Timestamp>) -> String {
    let Some(created) = created else {
        return "N/A".to_owned();
    };
    let now = jiff::Timestamp::now();
    let elapsed = now.duration_since(created);
    let elapsed = std::time::Duration::try_from(elapsed).unwrap_or_default();
    format!("{} ago", crate::units::human_duration(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_like_go_tabwriter() {
        assert_eq!(
            tabwrite("REPOSITORY\tTAG\tSIZE\nbusybox\tlatest\t4.26MB\n"),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }
}

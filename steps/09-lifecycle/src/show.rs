//! How `ps` shows containers, in Docker's words: "Up 2 minutes", "Exited (137) 5 seconds
//! ago", "About an hour ago", its columns, its `--format` templates.

use std::time::{Duration, SystemTime};

use crate::record::{parse_rfc3339, Container, Status};

// ANCHOR: human_duration
/// Docker's words for a duration (`go-units`' `HumanDuration`).
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let hours = (duration.as_secs_f64() / 3600.0).round() as u64;
    match seconds {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{seconds} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", seconds / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}
// ANCHOR_END: human_duration

/// How long ago `time` (RFC 3339) was, in Docker's words.
fn ago(time: &str, now: SystemTime) -> String {
    let elapsed = parse_rfc3339(time).and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
    format!("{} ago", human_duration(elapsed))
}

// ANCHOR: status_text
/// `ps`'s STATUS column.
pub fn status_text(container: &Container, now: SystemTime) -> String {
    let since = |time: &str| human_duration(parse_rfc3339(time).and_then(|t| now.duration_since(t).ok()).unwrap_or_default());
    match container.observed_status() {
        Status::Created => "Created".into(),
        Status::Running => match &container.state.health {
            Some(health) => format!("Up {} ({})", since(&container.state.started_at), health.summary()),
            None => format!("Up {}", since(&container.state.started_at)),
        },
        Status::Paused => format!("Up {} (Paused)", since(&container.state.started_at)),
        Status::Restarting => format!("Restarting ({}) {}", container.state.exit_code, ago(&container.state.finished_at, now)),
        Status::Exited => format!("Exited ({}) {}", container.state.exit_code, ago(&container.state.finished_at, now)),
        Status::Dead => "Dead".into(),
    }
}
// ANCHOR_END: status_text

/// One container as `ps` sees it: each field of `--format`'s templates.
pub struct Row {
    pub id: String,
    pub image: String,
    pub command: String,
    pub created_at: String,
    pub running_for: String,
    pub status: String,
    pub state: String,
    pub ports: String,
    pub names: String,
    pub size: String,
}

impl Row {
    /// `no_trunc`: the whole id and command, as `--no-trunc`.
    pub fn of(container: &Container, no_trunc: bool, now: SystemTime) -> Row {
        let command = container.command_line();
        let command = if no_trunc { command } else { ellipsis(&command, 20) };
        Row {
            id: if no_trunc { container.id.clone() } else { container.id.chars().take(12).collect() },
            image: container.image.clone(),
            command: format!("\"{command}\""),
            created_at: container.created.clone(),
            running_for: ago(&container.created, now),
            status: status_text(container, now),
            state: container.observed_status().to_string(),
            ports: container.ports.iter().map(|p| compact_port(p)).collect::<Vec<_>>().join(", "),
            names: container.name.clone(),
            size: String::new(),
        }
    }

    /// The cells in [`PS_COLUMNS`]' order.
    pub fn cells(&self) -> Vec<String> {
        [&self.id, &self.image, &self.command, &self.created_at, &self.running_for, &self.status, &self.state, &self.ports, &self.names, &self.size].into_iter().cloned().collect()
    }
}

/// `0.0.0.0:8080 -> 80/tcp` (step 03's words) as Docker's PORTS column writes it:
/// `0.0.0.0:8080->80/tcp`.
fn compact_port(mapping: &str) -> String {
    mapping.replace(" -> ", "->")
}

/// At most `width` characters, the last one `…` when cut (Docker's `Ellipsis`).
fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    text.chars().take(width - 1).chain(std::iter::once('…')).collect()
}

/// Every field of `ps`'s templates, with its header, in [`Row::cells`]' order.
pub const PS_COLUMNS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Size", "SIZE"),
];

/// What `ps` shows without `--format` (with `-s`, the size too).
pub const PS_DEFAULT: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Rows as a table: each column as wide as its widest cell, three spaces between (Docker's
/// tabwriter), no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |column: usize| rows.iter().map(|row| row[column].chars().count()).chain(std::iter::once(headers[column].chars().count())).max().unwrap_or(0);
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if column + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[column] - cell.chars().count() + 3));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

// ANCHOR: template
/// A `--format` template with `{{.Field}}` placeholders (Go's text/template, the part
/// people use with `ps` and `stats`) over `rows`, whose cells are the `columns` (a field's
/// name and its header); `table` first makes it a table with headers. An unknown field is
/// an error naming it.
pub fn render(template: &str, columns: &[(&str, &str)], rows: &[Vec<String>]) -> Result<String, String> {
    let (is_table, template) = match template.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, template),
    };
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut fields = Vec::new(); // each placeholder's column
    let mut rest = template.as_str();
    let mut pieces = Vec::new(); // the literal text before each placeholder
    while let Some(open) = rest.find("{{") {
        let close = rest[open..].find("}}").ok_or_else(|| format!("template {template:?}: an unclosed {{{{"))? + open;
        pieces.push(rest[..open].to_string());
        let field = rest[open + 2..close].trim().trim_start_matches('.');
        let column = columns.iter().position(|(name, _)| *name == field).ok_or_else(|| {
            let known: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
            format!("template {template:?}: {{{{.{field}}}}} is not a field ({})", known.join(", "))
        })?;
        fields.push(column);
        rest = &rest[close + 2..];
    }
    let tail = rest.to_string();
    let fill = |cells: &[String]| {
        let mut text = String::new();
        for (piece, column) in pieces.iter().zip(&fields) {
            text.push_str(piece);
            text.push_str(&cells[*column]);
        }
        text.push_str(&tail);
        text
    };
    if !is_table {
        return Ok(rows.iter().map(|row| fill(row) + "\n").collect());
    }
    // A table: cells split at tabs, headers from the fields' names, as Docker's.
    let split = |text: String| text.split('\t').map(str::to_string).collect::<Vec<_>>();
    let headers = split(fill(&columns.iter().map(|(_, header)| header.to_string()).collect::<Vec<_>>()));
    let cells: Vec<Vec<String>> = rows.iter().map(|row| split(fill(row))).filter(|cells| cells.len() == headers.len()).collect();
    Ok(table(&headers.iter().map(String::as_str).collect::<Vec<_>>(), &cells))
}
// ANCHOR_END: template

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (150, "2 minutes"),
            (3600, "About an hour"),
            (7200, "2 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
        ];
        for (seconds, words) in cases {
            assert_eq!(human_duration(Duration::from_secs(seconds)), words, "{seconds} s");
        }
    }

    #[test]
    fn templates_fill_fields_and_tables_align() {
        let container = Container::new(&"f".repeat(64), "web", "busybox", "", &["httpd".into(), "-f".into(), "-p".into(), "80".into(), "-h".into(), "/www/html/site".into()], Default::default());
        let row = Row::of(&container, false, SystemTime::now());
        assert_eq!(row.command, "\"httpd -f -p 80 -h /…\"", "20 characters, the last an ellipsis");
        let rows = [row.cells()];
        assert_eq!(render("{{.Names}} {{.State}}", PS_COLUMNS, &rows).unwrap(), "web created\n");
        assert_eq!(render("table {{.ID}}\t{{.Names}}", PS_COLUMNS, &rows).unwrap(), "CONTAINER ID   NAMES\nffffffffffff   web\n");
        assert!(render("{{.Nmes}}", PS_COLUMNS, &rows).unwrap_err().contains("Nmes"));
    }
}

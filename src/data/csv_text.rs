//! The CSV text drpipe writes and reads back between stages (`split.csv`, `index.csv`,
//! `predictions.csv`, `audit.csv`): RFC 4180 quoting, so that a name or patient id holding a
//! comma or a quote survives the round trip.

use std::borrow::Cow;

/// Quotes a field when it holds a comma, quote or newline (RFC 4180).
pub fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Splits one line on commas outside double quotes; a doubled quote inside quotes is a
/// quote. Cells are returned as written otherwise (not trimmed).
pub fn row(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cell, mut quoted) = (String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    out.push(cell);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_a_row() {
        let cells = ["plain", "a,b", "say \"hi\"", "", "x"];
        let line: Vec<_> = cells.iter().map(|c| field(c)).collect();
        assert_eq!(line.join(","), "plain,\"a,b\",\"say \"\"hi\"\"\",,x");
        assert_eq!(row(&line.join(",")), cells);
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}

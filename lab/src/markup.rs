//! Text in XML and HTML (the SVG drawings, the report, JUnit results): one escape for all of them.

/// `text` as XML character data or a double-quoted attribute value: the markup characters escaped, and control
/// characters XML 1.0 cannot carry (all but tab, newline and carriage return) dropped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

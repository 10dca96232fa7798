//! Terminal drawing of a swarm, like the original: one row per node, one cell per chunk
//! (`#` has, `+` incoming, `.` missing; `:` when a cell groups chunks and only some are there),
//! then current downloads, uploads and average download rate.
//!
//! On a TTY frames redraw in place (cursor up + clear line); otherwise each frame is printed as
//! plain lines under a time header, so logs and CI output stay readable.

use std::fmt::Write as _;

use super::Frame;

/// Render a frame as text lines, at most `width` chunk cells per row.
pub fn lines(frame: &Frame, width: usize) -> Vec<String> {
    let width = width.max(1);
    let per_cell = frame.chunks.div_ceil(width).max(1);
    let mut out = Vec::with_capacity(frame.rows.len() + 1);
    out.push(format!(
        "t = {:8.2} s   (one cell = {} chunk{})   down up  avg MB/s",
        frame.t,
        per_cell,
        if per_cell == 1 { "" } else { "s" }
    ));
    for r in &frame.rows {
        let mut line = format!("{:<4}", r.label);
        for group in r.cells.chunks(per_cell) {
            let has = group.iter().filter(|&&c| c == 2).count();
            let incoming = group.contains(&1);
            let ch = if !r.online {
                ' '
            } else if has == group.len() {
                '#'
            } else if incoming {
                '+'
            } else if has > 0 {
                ':'
            } else {
                '.'
            };
            line.push(ch);
        }
        if r.online {
            let _ = write!(line, " {:4} {:2} {:6.1}", r.downloads, r.uploads, r.avg_down / 1e6);
        } else {
            line.push_str("  (offline)");
        }
        out.push(line);
    }
    out
}

/// Draws frames to stdout, in place on a terminal.
pub struct Painter {
    tty: bool,
    width: usize,
    drawn: usize,
}

impl Painter {
    pub fn new(tty: bool, width: usize) -> Self {
        Painter { tty, width, drawn: 0 }
    }

    pub fn draw(&mut self, frame: &Frame) {
        let lines = lines(frame, self.width);
        let mut s = String::new();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(s, "\x1b[{}A", self.drawn);
            }
            for l in &lines {
                let _ = writeln!(s, "{l}\x1b[K");
            }
            // A node that left shrinks nothing (rows are stable), so no stale lines remain.
        } else {
            for l in &lines {
                let _ = writeln!(s, "{l}");
            }
            s.push('\n');
        }
        self.drawn = lines.len();
        // A closed pipe (`| head`) ends the drawing, not the simulation.
        use std::io::Write;
        let _ = std::io::stdout().write_all(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::Row;
    use super::*;

    #[test]
    fn cells_group_and_mark() {
        let frame = Frame {
            t: 1.0,
            chunks: 4,
            rows: vec![Row {
                label: "P00".into(),
                online: true,
                cells: vec![2, 1, 0, 2],
                downloads: 1,
                uploads: 0,
                avg_down: 1e6,
            }],
        };
        assert!(lines(&frame, 4)[1].starts_with("P00 #+.#"));
        assert!(lines(&frame, 2)[1].starts_with("P00 +:"));
    }
}

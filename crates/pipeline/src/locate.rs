//! Where a node of a YAML text is (line and column), by its path: `steps.train.needs.0`. serde
//! reads the spec without positions; validation finds them here, from yaml-rust2's marked events,
//! so an error about a step or a reference can point at it.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of keys and values by dotted path.
#[derive(Debug, Default)]
pub struct Positions {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

impl Positions {
    /// Reads `text`; positions after a syntax error are missing (serde reports that error).
    pub fn of(text: &str) -> Positions {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut walker, false);
        walker.out
    }

    /// The key of a mapping entry (`steps.train`), else the node itself (`steps.train.needs.0`).
    pub fn of_path(&self, path: &str) -> Option<Pos> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
    }

    /// The value of a mapping entry (where `needs: [a]` has its list).
    pub fn value_of(&self, path: &str) -> Option<Pos> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
    }

    /// The nearest position along the path: the path itself, else its parents.
    pub fn nearest(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.of_path(p) {
                return Some(pos);
            }
            p = &p[..p.rfind('.')?];
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    out: Positions,
    stack: Vec<Frame>,
    path: Vec<String>,
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl Walker {
    /// A node starts: returns whether it is a key (which is not pushed on the path).
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> bool {
        let here = pos(mark);
        match self.stack.last_mut() {
            Some(Frame::Map { key }) if key.is_none() => {
                let k = scalar.unwrap_or("?").to_string();
                *key = Some(k.clone());
                self.path.push(k);
                self.out.keys.insert(self.path.join("."), here);
                self.path.pop();
                true
            }
            Some(Frame::Map { key }) => {
                let k = key.clone().unwrap_or_default();
                self.path.push(k);
                self.out.values.insert(self.path.join("."), here);
                false
            }
            Some(Frame::Seq { index }) => {
                self.path.push(index.to_string());
                self.out.values.insert(self.path.join("."), here);
                false
            }
            None => false,
        }
    }

    /// A value node ended: step the parent on.
    fn done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => {
                *key = None;
                self.path.pop();
            }
            Some(Frame::Seq { index }) => {
                *index += 1;
                self.path.pop();
            }
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) if !self.node(mark, Some(&text)) => self.done(),
            Event::Alias(_) if !self.node(mark, None) => self.done(),
            Event::MappingStart(..) => {
                self.node(mark, None);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.node(mark, None);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text =
            "name: x\nsteps:\n  a:\n    run: echo\n  b:\n    needs: [a, c]\n    run: |\n      hi\n";
        let p = Positions::of(text);
        assert_eq!(p.of_path("steps.a"), Some(Pos { line: 3, column: 3 }));
        assert_eq!(p.of_path("steps.b.needs"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(
            p.of_path("steps.b.needs.1"),
            Some(Pos {
                line: 6,
                column: 16
            })
        );
        assert_eq!(
            p.nearest("steps.b.needs.7"),
            Some(Pos { line: 6, column: 5 })
        );
        assert_eq!(p.of_path("steps.b.run"), Some(Pos { line: 7, column: 5 }));
    }
}

//! Where each key of the configuration file stands, from the TOML parser's own spans, so an
//! error found after parsing names the line of the key it is about. It must never search the
//! text for a key's name (a dotted key or an inline table would fool it).

/// Each key's place in the file, in its table (a key of one section is never mistaken for
/// another's).
pub(super) struct Spans<'a> {
    text: &'a str,
    doc: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> Spans<'a> {
    pub(super) fn new(text: &'a str) -> Spans<'a> {
        Spans {
            text,
            doc: toml::de::DeTable::parse(text).ok(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of the key at `path` (`["engine", "concurrency"]`), if the file sets it.
    pub(super) fn line(&self, path: &[&str]) -> Option<usize> {
        let mut table = self.doc.as_ref()?.get_ref();
        let (last, parents) = path.split_last()?;
        for p in parents {
            table = table.get(*p)?.get_ref().as_table()?;
        }
        let (key, _) = table.get_key_value(*last)?;
        Some(self.line_at(key.span().start))
    }

    /// The line of the key at `path`, or else of its table's header, or else 1.
    pub(super) fn line_or_table(&self, path: &[&str]) -> usize {
        self.line(path)
            .or_else(|| self.line(path.get(..path.len().checked_sub(1)?)?))
            .unwrap_or(1)
    }
}

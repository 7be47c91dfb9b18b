//! Marathon's constraint operators, evaluated the way Marathon's `Constraints.scala` does
//! (1.x), on nodes instead of offers.
//!
//! A constraint `[field, OPERATOR, value?]` reads one *field* of a node: `hostname` or
//! `@hostname` (the node's host name), `@region`, `@zone` (its fault domain), or any attribute
//! name. Attribute values are compared as Mesos formats them (see [`mesos_value_string`]). A
//! node without the field is accepted only by `UNLIKE`.
//!
//! | operator | accepts a node whose value `v` … |
//! |---|---|
//! | `UNIQUE` | no instance of the App has yet |
//! | `CLUSTER:x` | equals `x` |
//! | `CLUSTER` | equals the App's pinned value (see below); any value while none is pinned |
//! | `LIKE:re` | fully matches `re` |
//! | `UNLIKE:re` | does not fully match `re` (or is absent) |
//! | `MAX_PER:n` | has fewer than `n` instances of the App |
//! | `IS:x` | equals `x`, both scalars rounded to thousandths, half-even |
//! | `GROUP_BY:n` | has no instance yet, or: at least `n` values are used and `v` has the fewest instances among the used values (Marathon's rule, exactly) |
//! | `GROUP_BY` | has no more instances than the least-used *known* value (see below) |
//!
//! Instances counted are the App's instances bound to nodes (any version, any non-terminal
//! phase) plus those placed earlier in the same batch.
//!
//! Two semantics are Pacer's own, because Pacer knows every node while Marathon only saw the
//! offers of the moment:
//!
//! * **`CLUSTER` without a value** pins to the value of the App's existing instances; if they
//!   disagree (the constraint was added later), to the value most of them have, ties broken by
//!   the smallest value. With no instance anywhere, the first placement of the batch pins it.
//!   Marathon took "the first placed instance" of an unordered collection.
//! * **`GROUP_BY` without a count** spreads evenly over the *known* values: the distinct values
//!   of the field among the candidate nodes that could ever take the App (schedulable, of an
//!   accepted role, and passing the App's count-independent constraints — `LIKE`, `UNLIKE`,
//!   `IS`, `CLUSTER:x` — so `rack LIKE rack-[1-3]` with `rack GROUP_BY` spreads over three
//!   racks, not all of them). A node is accepted when its value has no more instances than the
//!   least-used known value. Marathon, learning values only from offers, accepted any value it
//!   had not yet seen, so an App could pile onto the first racks offered; knowing the values
//!   up front gives the evenness users ask for. Like Marathon's, the rule is strict: when the
//!   least-used value has no room left, the App waits rather than skews.
//!
//!   With a count (`GROUP_BY:3`), Marathon's rule is kept exactly: a value without instances is
//!   always accepted, and a used value only once at least `n` values are used and it is among
//!   the least used.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use pacer_schemas::constraint::{ConstraintRule, ParsedConstraint};

/// The node field a constraint reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `hostname` or `@hostname`: the node's host name.
    Hostname,
    /// `@region`: the node's fault-domain region.
    Region,
    /// `@zone`: the node's fault-domain zone.
    Zone,
    /// Any other name: a node attribute.
    Attribute(String),
}

impl Field {
    /// The field a constraint's first element names.
    pub fn parse(field: &str) -> Self {
        match field {
            "hostname" | "@hostname" => Self::Hostname,
            "@region" => Self::Region,
            "@zone" => Self::Zone,
            other => Self::Attribute(other.to_owned()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hostname => f.write_str("hostname"),
            Self::Region => f.write_str("@region"),
            Self::Zone => f.write_str("@zone"),
            Self::Attribute(name) => f.write_str(name),
        }
    }
}

/// Whether `text` is a Mesos scalar as Marathon recognises one: `[0-9]+(\.[0-9]+)?`.
fn is_scalar(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

/// A scalar rounded to thousandths, half-even on its exact binary value, trailing zeros
/// dropped: Java's `DecimalFormat("0.###")`, which Marathon uses (`0.8001` → `0.8`, `1.0005` →
/// `1`, `1.00051` → `1.001`, `2.50` → `2.5`). `None` if `text` is not a scalar.
pub fn format_scalar(text: &str) -> Option<String> {
    if !is_scalar(text) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    // Rust's fixed-precision formatting rounds the exact binary value, ties to even.
    let mut formatted = format!("{value:.3}");
    while formatted.ends_with('0') {
        formatted.pop();
    }
    if formatted.ends_with('.') {
        formatted.pop();
    }
    Some(formatted)
}

/// An attribute value as Mesos and Marathon format it for comparison: scalars rounded (see
/// [`format_scalar`]), ranges `[b-e,…]` sorted by begin, sets `{a,b}` sorted; text unchanged.
/// Node attributes are plain strings in Pacer, so the type is recognised from the text the
/// way Mesos parses `--attributes`.
pub fn mesos_value_string(raw: &str) -> Cow<'_, str> {
    if let Some(scalar) = format_scalar(raw) {
        return Cow::Owned(scalar);
    }
    if let Some(inner) = raw
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        && !inner.is_empty()
    {
        let mut items: Vec<&str> = inner.split(',').map(str::trim).collect();
        items.sort_unstable();
        return Cow::Owned(format!("{{{}}}", items.join(",")));
    }
    if let Some(inner) = raw
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        && let Some(mut ranges) = parse_ranges(inner)
    {
        ranges.sort_unstable();
        let ranges: Vec<String> = ranges
            .iter()
            .map(|(begin, end)| format!("{begin}-{end}"))
            .collect();
        return Cow::Owned(format!("[{}]", ranges.join(",")));
    }
    Cow::Borrowed(raw)
}

fn parse_ranges(inner: &str) -> Option<Vec<(u64, u64)>> {
    inner
        .split(',')
        .map(|range| {
            let (begin, end) = range.trim().split_once('-')?;
            Some((begin.trim().parse().ok()?, end.trim().parse().ok()?))
        })
        .collect()
}

/// A constraint as Marathon prints it: `field:OPERATOR` or `field:OPERATOR:value`.
pub fn describe(constraint: &ParsedConstraint) -> String {
    let field = &constraint.field;
    match &constraint.rule {
        ConstraintRule::Unique => format!("{field}:UNIQUE"),
        ConstraintRule::Cluster(None) => format!("{field}:CLUSTER"),
        ConstraintRule::Cluster(Some(value)) => format!("{field}:CLUSTER:{value}"),
        ConstraintRule::GroupBy(None) => format!("{field}:GROUP_BY"),
        ConstraintRule::GroupBy(Some(count)) => format!("{field}:GROUP_BY:{count}"),
        ConstraintRule::Like(regex) => format!("{field}:LIKE:{}", regex.as_str()),
        ConstraintRule::Unlike(regex) => format!("{field}:UNLIKE:{}", regex.as_str()),
        ConstraintRule::MaxPer(count) => format!("{field}:MAX_PER:{count}"),
        ConstraintRule::Is(value) => format!("{field}:IS:{value}"),
    }
}

/// Whether a rule's verdict depends on where the App's instances already are.
pub(crate) fn counts_matter(rule: &ConstraintRule) -> bool {
    matches!(
        rule,
        ConstraintRule::Unique
            | ConstraintRule::Cluster(None)
            | ConstraintRule::GroupBy(_)
            | ConstraintRule::MaxPer(_)
    )
}

/// A count-independent rule, ready to test node values.
#[derive(Clone, Debug)]
pub(crate) struct StaticRule {
    rule: ConstraintRule,
    /// `IS`: the value, rounded when it is a scalar (Marathon rounds the constraint's value).
    is_value: Option<String>,
}

impl StaticRule {
    pub(crate) fn new(rule: &ConstraintRule) -> Self {
        let is_value = match rule {
            ConstraintRule::Is(value) => {
                Some(format_scalar(value).unwrap_or_else(|| value.clone()))
            }
            _ => None,
        };
        Self {
            rule: rule.clone(),
            is_value,
        }
    }

    /// Whether a node with this field value (`None`: absent) passes the count-independent
    /// part of the rule. Count-dependent rules only require the field to be present here.
    pub(crate) fn accepts(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return matches!(self.rule, ConstraintRule::Unlike(_));
        };
        match &self.rule {
            ConstraintRule::Like(regex) => regex.matches(value),
            ConstraintRule::Unlike(regex) => !regex.matches(value),
            ConstraintRule::Is(_) => self.is_value.as_deref() == Some(value),
            ConstraintRule::Cluster(Some(expected)) => value == expected,
            ConstraintRule::Unique
            | ConstraintRule::Cluster(None)
            | ConstraintRule::GroupBy(_)
            | ConstraintRule::MaxPer(_) => true,
        }
    }
}

/// Interned values of one field over the view's nodes.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldIndex {
    /// Distinct values; a value id indexes this.
    pub(crate) values: Vec<String>,
    /// Value id of each node (by node index), `None` where the node lacks the field.
    pub(crate) per_node: Vec<Option<u32>>,
}

impl FieldIndex {
    /// Interns `value_of(node)` over `count` nodes.
    pub(crate) fn build<'a>(count: usize, value_of: impl Fn(usize) -> Option<&'a str>) -> Self {
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut values = Vec::new();
        let per_node = (0..count)
            .map(|node| {
                let value = value_of(node)?;
                Some(*ids.entry(value).or_insert_with(|| {
                    values.push(value.to_owned());
                    // At most one value per node, and node indexes fit in u32.
                    u32::try_from(values.len() - 1).unwrap_or(u32::MAX)
                }))
            })
            .collect();
        Self { values, per_node }
    }
}

/// A multiset of counts, to know the minimum count over a set of values as counts grow.
#[derive(Clone, Debug, Default)]
struct Histogram(BTreeMap<u32, u32>);

impl Histogram {
    fn add(&mut self, count: u32) {
        *self.0.entry(count).or_default() += 1;
    }

    fn remove(&mut self, count: u32) {
        if let Some(n) = self.0.get_mut(&count) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&count);
            }
        }
    }

    fn bump(&mut self, from: u32) {
        self.remove(from);
        self.add(from + 1);
    }

    fn min(&self) -> Option<u32> {
        self.0.keys().next().copied()
    }
}

/// Where one App's instances are, by the values of one field: the counts that `UNIQUE`,
/// `MAX_PER`, `GROUP_BY` and `CLUSTER` need, kept up to date as the batch places instances.
#[derive(Clone, Debug)]
pub(crate) struct FieldTally {
    /// Instances per value id.
    counts: Vec<u32>,
    /// Counts of the values that have instances.
    used: Histogram,
    /// Number of values that have instances.
    used_values: u32,
    /// For `GROUP_BY` without a count: which values are known, and their counts.
    known: Option<(Vec<bool>, Histogram)>,
    /// For `CLUSTER` without a value: the pinned value.
    pin: Option<u32>,
}

impl FieldTally {
    /// Counts from the App's instances per node.
    pub(crate) fn new(index: &FieldIndex, per_node: &HashMap<u32, u32>) -> Self {
        let mut counts = vec![0u32; index.values.len()];
        for (&node, &count) in per_node {
            if let Some(Some(value)) = index.per_node.get(node as usize) {
                counts[*value as usize] += count;
            }
        }
        let mut used = Histogram::default();
        let mut used_values = 0;
        for &count in counts.iter().filter(|&&count| count > 0) {
            used.add(count);
            used_values += 1;
        }
        // The most used value, ties to the smallest value.
        let pin = counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .max_by(|(a, count_a), (b, count_b)| {
                count_a
                    .cmp(count_b)
                    .then_with(|| index.values[*b].cmp(&index.values[*a]))
            })
            .and_then(|(value, _)| u32::try_from(value).ok());
        Self {
            counts,
            used,
            used_values,
            known: None,
            pin,
        }
    }

    /// Declares the known values (for `GROUP_BY` without a count), once.
    pub(crate) fn set_known(&mut self, known_values: impl IntoIterator<Item = u32>) {
        if self.known.is_some() {
            return;
        }
        let mut known = vec![false; self.counts.len()];
        let mut histogram = Histogram::default();
        for value in known_values {
            if let Some(flag) = known.get_mut(value as usize)
                && !*flag
            {
                *flag = true;
                histogram.add(self.counts[value as usize]);
            }
        }
        self.known = Some((known, histogram));
    }

    /// Counts one more instance on `value`.
    pub(crate) fn record(&mut self, value: u32) {
        let Some(count) = self.counts.get_mut(value as usize) else {
            return;
        };
        let before = *count;
        *count += 1;
        if before == 0 {
            self.used.add(1);
            self.used_values += 1;
        } else {
            self.used.bump(before);
        }
        if let Some((known, histogram)) = &mut self.known
            && known[value as usize]
        {
            histogram.bump(before);
        }
        self.pin.get_or_insert(value);
    }

    /// Whether a count-dependent rule accepts a node with value `value`.
    pub(crate) fn accepts(&self, rule: &ConstraintRule, value: u32) -> bool {
        let count = self.counts.get(value as usize).copied().unwrap_or(0);
        match rule {
            ConstraintRule::Unique => count == 0,
            ConstraintRule::MaxPer(max) => count < *max,
            ConstraintRule::Cluster(None) => self.pin.is_none_or(|pin| pin == value),
            ConstraintRule::GroupBy(Some(minimum)) => {
                count == 0 || (self.used_values >= *minimum && Some(count) == self.used.min())
            }
            ConstraintRule::GroupBy(None) => match &self.known {
                Some((_, histogram)) => histogram.min().is_none_or(|min| count <= min),
                None => true,
            },
            ConstraintRule::Cluster(Some(_))
            | ConstraintRule::Like(_)
            | ConstraintRule::Unlike(_)
            | ConstraintRule::Is(_) => true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_like_decimal_format() {
        for (raw, expect) in [
            ("0.8", Some("0.8")),
            ("0.80", Some("0.8")),
            ("0.8001", Some("0.8")),
            ("1.0005", Some("1")),
            ("1.00051", Some("1.001")),
            ("1.1005", Some("1.101")),
            ("0.0625", Some("0.062")),
            ("2", Some("2")),
            ("007", Some("7")),
            ("2.50", Some("2.5")),
            ("-1", None),
            ("1.", None),
            (".5", None),
            ("1e3", None),
            ("rack-1", None),
            ("", None),
        ] {
            assert_eq!(format_scalar(raw).as_deref(), expect, "{raw}");
        }
    }

    #[test]
    fn values_format_as_mesos_does() {
        for (raw, expect) in [
            ("{c,a,b}", "{a,b,c}"),
            ("[300-400,100-200]", "[100-200,300-400]"),
            ("[x-y]", "[x-y]"),
            ("rack-1", "rack-1"),
            ("0.80", "0.8"),
            ("{}", "{}"),
        ] {
            assert_eq!(mesos_value_string(raw), expect, "{raw}");
        }
    }

    #[test]
    fn fields_name_hostname_region_zone_or_attributes() {
        assert_eq!(Field::parse("hostname"), Field::Hostname);
        assert_eq!(Field::parse("@hostname"), Field::Hostname);
        assert_eq!(Field::parse("@region"), Field::Region);
        assert_eq!(Field::parse("@zone"), Field::Zone);
        assert_eq!(
            Field::parse("rack_id"),
            Field::Attribute("rack_id".to_owned())
        );
    }
}

//! Clustering members by attribute values: each distinct combination of the `cluster_by`
//! values (lower-cased text, or the bucket of a number) is one cluster. Counts are kept per
//! page of members, so a checkpoint holds one page's counts and pages merge at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::checkpoint::fingerprint;
use super::config::AttributePersonasConfig;
use crate::domain::truncate_chars;
use crate::queue::{ClusterPersona, ClusterValue, Spread};

/// Values longer than this are cut: they name clusters and personas, and checkpoints must
/// stay small.
pub const MAX_VALUE_CHARS: usize = 40;
/// Values per `describe` attribute a description lists before "others".
pub const TOP_VALUES: usize = 3;

/// Members counted per cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Members with attributes that were counted.
    pub members: u64,
    /// Keyed by the cluster's values as a JSON array, so any value keys unambiguously.
    pub clusters: BTreeMap<String, Count>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub size: u64,
    /// Per `describe` attribute, in order: value → members.
    pub describe: Vec<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn add(&mut self, config: &AttributePersonasConfig, attributes: &Map<String, Value>) {
        let values: Vec<String> =
            config.cluster_by.iter().map(|c| cut(c.value_of(attributes.get(&c.attribute)))).collect();
        let key = serde_json::to_string(&values).unwrap_or_default();
        let count = self.clusters.entry(key).or_default();
        count.size += 1;
        count.describe.resize_with(config.describe.len(), BTreeMap::new);
        for (spread, attribute) in count.describe.iter_mut().zip(&config.describe) {
            let value = match attributes.get(attribute) {
                None | Some(Value::Null) => crate::template::MISSING.to_owned(),
                Some(Value::String(s)) if s.trim().is_empty() => crate::template::MISSING.to_owned(),
                Some(Value::String(s)) => s.trim().to_lowercase(),
                Some(other) => other.to_string(),
            };
            *spread.entry(cut(value)).or_default() += 1;
        }
        self.members += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.members += other.members;
        for (key, count) in other.clusters {
            let mine = self.clusters.entry(key).or_default();
            mine.size += count.size;
            if mine.describe.len() < count.describe.len() {
                mine.describe.resize_with(count.describe.len(), BTreeMap::new);
            }
            for (spread, theirs) in mine.describe.iter_mut().zip(count.describe) {
                for (value, n) in theirs {
                    *spread.entry(value).or_default() += n;
                }
            }
        }
    }

    /// The `clusters` largest clusters of at least `min_cluster_size`, largest first (ties by
    /// their values, so every run picks the same).
    pub fn largest(&self, config: &AttributePersonasConfig) -> Vec<(&str, &Count)> {
        let mut kept: Vec<(&str, &Count)> = self
            .clusters
            .iter()
            .filter(|(_, c)| c.size >= config.min_cluster_size)
            .map(|(k, c)| (k.as_str(), c))
            .collect();
        kept.sort_by(|a, b| b.1.size.cmp(&a.1.size).then_with(|| a.0.cmp(b.0)));
        kept.truncate(config.clusters);
        kept
    }

    /// The job for one cluster from [`Tally::largest`].
    pub fn persona_job(
        &self,
        config: &AttributePersonasConfig,
        segment_id: u64,
        key: &str,
        count: &Count,
        run_window: &str,
    ) -> ClusterPersona {
        let values: Vec<String> = serde_json::from_str(key).unwrap_or_default();
        let values: Vec<ClusterValue> = config
            .cluster_by
            .iter()
            .zip(values)
            .map(|(c, value)| ClusterValue { name: c.name.clone(), attribute: c.attribute.clone(), value })
            .collect();
        let distribution = config
            .describe
            .iter()
            .zip(&count.describe)
            .map(|(attribute, spread)| {
                let mut ranked: Vec<(String, u64)> = spread.iter().map(|(v, n)| (v.clone(), *n)).collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let others = ranked.iter().skip(TOP_VALUES).map(|(_, n)| n).sum();
                ranked.truncate(TOP_VALUES);
                Spread { attribute: attribute.clone(), top: ranked, others }
            })
            .collect();
        ClusterPersona {
            segment_id,
            cluster_id: cluster_id(segment_id, &values),
            values,
            size: count.size,
            members: self.members,
            distribution,
            run_window: run_window.to_owned(),
        }
    }
}

/// A cluster's identity: the segment and which attribute has which value. Not the run, nor
/// the size: the same cluster found in a later run gets the same id, and so the same job key.
pub fn cluster_id(segment_id: u64, values: &[ClusterValue]) -> String {
    let pairs: Vec<(&str, &str)> = values.iter().map(|v| (v.attribute.as_str(), v.value.as_str())).collect();
    format!("c{}", fingerprint(&json!({"segment": segment_id, "values": pairs})))
}

fn cut(mut value: String) -> String {
    let kept = truncate_chars(&value, MAX_VALUE_CHARS).len();
    value.truncate(kept);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Triggers;

    fn config(clusters: usize) -> AttributePersonasConfig {
        let text = format!(
            "[cio_sync.attribute_personas]\nclusters = {clusters}\nmin_cluster_size = 2\ndescribe = [\"country\"]\n\
             cluster_by = [{{ attribute = \"plan_type\", name = \"plan\" }}, {{ attribute = \"ltv\", buckets = [100] }}]"
        );
        Triggers::parse(&text, "t.toml").unwrap().cio_sync.attribute_personas
    }

    fn person(plan: &str, ltv: Value, country: &str) -> Map<String, Value> {
        json!({"plan_type": plan, "ltv": ltv, "country": country}).as_object().unwrap().clone()
    }

    fn tally(config: &AttributePersonasConfig, people: &[Map<String, Value>]) -> Tally {
        let mut t = Tally::default();
        for p in people {
            t.add(config, p);
        }
        t
    }

    #[test]
    fn members_group_by_lower_cased_values_and_buckets() {
        let c = config(2);
        let t = tally(
            &c,
            &[
                person("Pro", json!("250"), "US"),
                person("pro ", json!(900), "DE"),
                person("pro", json!(5), "us"),
                person("Free", json!(5), "us"),
                person("free", json!(1), "us"),
                person("free", json!(2), "fr"),
            ],
        );
        assert_eq!(t.members, 6);
        let sizes: Vec<(&str, u64)> = t.clusters.iter().map(|(k, c)| (k.as_str(), c.size)).collect();
        assert_eq!(sizes, [(r#"["free","<100"]"#, 3), (r#"["pro","100+"]"#, 2), (r#"["pro","<100"]"#, 1)]);
        let largest = t.largest(&c);
        assert_eq!(largest.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [r#"["free","<100"]"#, r#"["pro","100+"]"#]);

        let job = t.persona_job(&c, 42, largest[0].0, largest[0].1, "w");
        assert_eq!(job.label(), "plan: free, ltv: <100");
        assert_eq!((job.size, job.members), (3, 6));
        assert_eq!(job.distribution[0].top, vec![("us".to_owned(), 2), ("fr".to_owned(), 1)]);
        assert_eq!(job.distribution_text(), "country: us 67%, fr 33%");
    }

    #[test]
    fn pages_merge_into_the_same_counts_as_one_pass() {
        let c = config(2);
        let people: Vec<_> =
            (0..9).map(|i| person(["pro", "free", "team"][i % 3], json!(i * 40), ["us", "de"][i % 2])).collect();
        let whole = tally(&c, &people);
        let mut merged = tally(&c, &people[..4]);
        merged.merge(tally(&c, &people[4..]));
        assert_eq!(merged, whole);
    }

    #[test]
    fn small_clusters_are_dropped_and_ties_break_the_same_way_every_time() {
        let c = config(5);
        let t = tally(
            &c,
            &[
                person("a", json!(1), "x"),
                person("b", json!(1), "x"),
                person("b", json!(1), "x"),
                person("c", json!(1), "x"),
                person("c", json!(1), "x"),
            ],
        );
        let kept: Vec<_> = t.largest(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kept,
            [r#"["b","<100"]"#, r#"["c","<100"]"#],
            "size 1 is below min_cluster_size; b before c on a tie"
        );
    }

    #[test]
    fn a_cluster_id_depends_on_segment_and_values_only() {
        let c = config(2);
        let a = tally(&c, &[person("pro", json!(1), "x"), person("pro", json!(2), "y")]);
        let b = tally(&c, &[person("pro", json!(3), "z"), person("pro", json!(4), "z"), person("pro", json!(5), "z")]);
        let (ka, ca) = a.largest(&c)[0];
        let (kb, cb) = b.largest(&c)[0];
        let ja = a.persona_job(&c, 42, ka, ca, "2026-03-02_7d");
        let jb = b.persona_job(&c, 42, kb, cb, "2026-03-09_7d");
        assert_eq!(ja.cluster_id, jb.cluster_id, "another run, another size: the same cluster");
        assert_ne!(ja.cluster_id, b.persona_job(&c, 43, kb, cb, "w").cluster_id, "another segment: another cluster");
        assert!(ja.cluster_id.starts_with('c') && ja.cluster_id.len() == 17, "{}", ja.cluster_id);
    }

    #[test]
    fn long_values_are_cut() {
        let c = config(2);
        let t = tally(&c, &[person(&"x".repeat(500), json!(1), &"y".repeat(500))]);
        let (key, count) = t.clusters.iter().next().unwrap();
        assert!(key.len() < 60, "{key}");
        assert_eq!(count.describe[0].keys().next().unwrap().chars().count(), MAX_VALUE_CHARS);
    }
}

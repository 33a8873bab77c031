//! The order to start services in: levels of services whose dependencies
//! are all in earlier levels. A level's services start in parallel.

use std::collections::{BTreeMap, BTreeSet};

use super::model::Service;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error("dependency cycle between services: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

pub fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<Vec<String>>, OrderError> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut levels = Vec::new();
    while placed.len() < services.len() {
        let level: Vec<String> = services
            .iter()
            .filter(|(name, _)| !placed.contains(name.as_str()))
            .filter(|(_, s)| {
                s.depends_on
                    .keys()
                    .all(|d| placed.contains(d.as_str()) || !services.contains_key(d))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if level.is_empty() {
            return Err(OrderError::Cycle(find_cycle(services, &placed)));
        }
        for name in &level {
            if let Some((k, _)) = services.get_key_value(name) {
                placed.insert(k.as_str());
            }
        }
        levels.push(level);
    }
    Ok(levels)
}

/// One cycle among the services not yet placed, for the error message.
fn find_cycle(services: &BTreeMap<String, Service>, placed: &BTreeSet<&str>) -> Vec<String> {
    let Some(start) = services.keys().find(|n| !placed.contains(n.as_str())) else {
        return Vec::new();
    };
    let mut path: Vec<String> = vec![start.clone()];
    loop {
        let current = &path[path.len() - 1];
        let next = services[current]
            .depends_on
            .keys()
            .find(|d| !placed.contains(d.as_str()) && services.contains_key(*d));
        match next {
            Some(n) if path.contains(n) => {
                let from = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(n.clone());
                return cycle;
            }
            Some(n) => path.push(n.clone()),
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::Condition;

    fn services(edges: &[(&str, &[&str])]) -> BTreeMap<String, Service> {
        edges
            .iter()
            .map(|(name, deps)| {
                let service = Service {
                    image: Some("i".into()),
                    depends_on: deps
                        .iter()
                        .map(|d| (d.to_string(), Condition::ServiceHealthy))
                        .collect(),
                    ..Service::default()
                };
                (name.to_string(), service)
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_independent_services_share_a_level() {
        let order = start_order(&services(&[
            ("api", &["auth", "db", "kafka"]),
            ("auth", &["db"]),
            ("db", &[]),
            ("kafka", &[]),
            ("worker", &["db", "kafka"]),
        ]))
        .expect("no cycle");
        assert_eq!(
            order,
            vec![vec!["db", "kafka"], vec!["auth", "worker"], vec!["api"]]
        );
    }

    #[test]
    fn a_cycle_is_a_clear_error_naming_it() {
        let err = start_order(&services(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &[]),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle between services: a -> b -> c -> a"
        );
    }
}

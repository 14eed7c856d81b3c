//! Strict JSON: an object that names the same key twice is refused. `serde_json` keeps the last
//! value of a repeated key without a word, so `{"quantity": 1, "quantity": 100}` would be read
//! as 100 while a log or a proxy that reads the first shows 1. No well-kept crate offers the
//! check on its own, so it is this small visitor: it walks the document once, keeps nothing, and
//! names the first repeated key by its path.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

/// `Err(path of the repeated key)` if some object in `json` repeats a key; `Ok` for anything
/// else, malformed JSON included (the parser that follows reports that).
pub fn repeated_key(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    match (Walk {
        path: String::new(),
    })
    .deserialize(&mut de)
    {
        Err(e) if e.to_string().starts_with(MARK) => Err(e
            .to_string()
            .trim_start_matches(MARK)
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned()),
        _ => Ok(()),
    }
}

const MARK: &str = "repeated key: ";

/// JSON has one number type: `4268.0` is the integer 4268 (JSON Schema's `integer` says so too),
/// so a number with no fraction is read as an integer wherever one is expected. Fractions stay
/// fractions and are refused by the integer fields, naming them.
pub fn integral_floats_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.007_199_254_740_992e15
            {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// No field of a request body is nullable: `{"safety": null}` is refused naming `safety`, as
/// the API description refuses it, rather than read as if the field were absent. Returns the
/// path of the first `null`.
pub fn first_null(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        match v {
            serde_json::Value::Null => Some(path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{path}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(x, &p)
            }),
            _ => None,
        }
    }
    walk(v, "")
}

struct Walk {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                return Err(A::Error::custom(format!("{MARK}{path}")));
            }
            map.next_value_seed(Walk { path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{i}]", self.path),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers_and_fractions_stay() {
        let mut v = serde_json::json!({"on_hand": 4268.0, "lines": [{"quantity": 2.0, "price": 1.5}], "big": 1e300});
        integral_floats_as_integers(&mut v);
        assert_eq!(v["on_hand"], serde_json::json!(4268));
        assert!(v["on_hand"].is_i64());
        assert!(v["lines"][0]["quantity"].is_i64());
        assert_eq!(v["lines"][0]["price"], serde_json::json!(1.5));
        assert!(
            v["big"].is_f64(),
            "beyond exact integers it stays a float (and is refused)"
        );
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path_and_nothing_else_is_refused() {
        let cases: &[(&str, Result<(), &str>)] = &[
            (r#"{"a": 1, "b": {"c": 2}}"#, Ok(())),
            (r#"{"a": 1, "a": 2}"#, Err("a")),
            (
                r#"{"lines": [{"sku": "A", "quantity": 1, "quantity": 100}]}"#,
                Err("lines[0].quantity"),
            ),
            (
                r#"{"x": {"y": [1, {"z": 1}, {"z": 2, "z": 3}]}}"#,
                Err("x.y[2].z"),
            ),
            (r#"[{"a": 1}, {"a": 1}]"#, Ok(())),
            (r#"{"a": "\u0062", "b": 1}"#, Ok(())),
            (r#"{"a\u0062": 1, "ab": 2}"#, Err("ab")),
            ("{not json", Ok(())),
            ("", Ok(())),
        ];
        for (json, want) in cases {
            assert_eq!(
                repeated_key(json.as_bytes()),
                want.map_err(str::to_owned),
                "{json}"
            );
        }
    }

    #[test]
    fn the_first_null_is_named_by_its_path() {
        let cases: &[(serde_json::Value, Option<&str>)] = &[
            (serde_json::json!({"a": 1, "b": [true, "x"]}), None),
            (serde_json::json!({"safety": null}), Some("safety")),
            (
                serde_json::json!({"lines": [{"sku": "A"}, {"sku": null}]}),
                Some("lines[1].sku"),
            ),
            (serde_json::json!(null), Some("")),
        ];
        for (v, want) in cases {
            assert_eq!(first_null(v).as_deref(), *want, "{v}");
        }
    }
}

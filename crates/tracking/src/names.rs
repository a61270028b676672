//! Names for runs started without one, in MLflow's shape: `adjective-noun-NNN`.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "daring", "eager", "fleet", "gentle",
    "glad", "honest", "jolly", "keen", "lively", "lucky", "merry", "nimble", "patient", "proud",
    "quiet", "rapid", "silent", "sly", "steady", "sunny", "swift", "tidy", "vivid", "wise",
];
const NOUNS: &[&str] = &[
    "otter", "heron", "lynx", "badger", "falcon", "ibis", "koala", "marten", "newt", "orca",
    "panda", "quail", "raven", "salmon", "tapir", "urchin", "vole", "wren", "yak", "zebra",
    "bison", "crane", "dingo", "egret", "ferret", "gecko", "hare", "jackal", "lemur", "moose",
];

/// A fresh random run name, e.g. `brisk-heron-417`.
pub fn random_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("otter");
    format!("{adjective}-{noun}-{}", rng.random_range(0..1000))
}

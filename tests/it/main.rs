//! Integration tests: one binary, one module per area. Each test starts the real
//! `scim-bridge` daemon through `harness::Daemon` and talks HTTP to it, except
//! `fuzz_corpus`, which replays the fuzz corpora through the library's checks.

mod ad;
mod bench;
mod cli;
mod contract;
mod directories_smoke;
mod ds389;
mod durability;
mod endpoints;
mod entra;
mod faults;
mod fuzz_corpus;
mod harness;
mod hostile;
mod injection;
mod journal;
mod ldap_check;
mod ldap_e2e;
mod ldap_harness_smoke;
mod ldap_ops;
mod ldap_policies;
mod ldap_target;
mod ldap_tls;
mod lifecycle;
mod limits;
mod members;
mod oauth;
mod observability;
mod passwords;
mod protocol;
mod rate_limits;
mod regressions;
mod serving;
mod slapd;
mod sqlite_target;
mod systemd_unit;
mod tokens;

//! Reading the directory's subschema (being written).

"""Data layer: record formats and turn rules, streaming reading, atomic writing, validation."""

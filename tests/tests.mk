# tests/: unit tests of the cb.h core (being written).

"""Running benchmarks: benchmark definitions (:mod:`.spec`, parsed from YAML by :mod:`.benchmark`),
cells (:mod:`.cells`), the harness that runs one cell (:mod:`.harness`), the executors that run many
(:mod:`.executor`), the SQLite store (:mod:`.store`), per-sample metrics (:mod:`.metrics`), the
one-off ``robench attack`` run (:mod:`.oneoff`) and the performance benchmarks (:mod:`.bench`)."""

"""From the store to the reader: AutoAttack-style aggregation (:mod:`.aggregate`), ``board.json``
(:mod:`.board`) and its renderings (Markdown/CSV :mod:`.render`, HTML :mod:`.html`, figures
:mod:`.figures`), the CI regression gate (:mod:`.regress`) and pictures of examples (:mod:`.show`)."""

"""Using trained models: checkpoints → models (:mod:`.checkpoint`), the one caption engine (:mod:`.engine`),
feature extraction (:mod:`.features`) and the files of batch captioning (:mod:`.output`). No Lightning."""

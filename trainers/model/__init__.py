"""The model the engine trains.

- ``architecture.py``: ``Architecture`` (every size and choice of a model), ``MuxStyle``,
  ``DemuxKind``, ``Pooling``, ``architecture_for_sparsity``, ``prunable_params``;
- ``architecture.py`` also holds ``Family`` (bert, electra, roberta / xlm-roberta, distilbert),
  read from ``config.model_type``;
- ``encoder.py``: the BERT encoder (every family's embeddings), with CoFi's masks applied in
  its forward;
- ``masks.py``: ``Masks``, the five CoFi mask types a forward takes;
- ``multiplexing.py``: ``Multiplexer`` and the demultiplexers (``IndexPosDemux``, ``MLPDemux``);
- ``classifier.py``: ``Classifier`` (multiplexer, encoder, demultiplexer, head);
- ``checkpoints.py``: ``load_pretrained`` (Hugging Face checkpoints of every family, MUX-BERT),
  ``save_model``, ``load_classifier``, ``load_tokenizer``.
"""

"""A task's text: ``tables.py`` -- ``load_tables`` reads a study's labelled splits through
``datasets`` (files or the hub), checks them, numbers their labels and carves the splits it
lacks; ``token_cache.py`` -- ``encoded_table``, their token ids, cached on disk; ``splits.py`` --
``Encoded`` (token ids on a device), ``encode``, ``read_unlabelled_text`` (the warm-up's text),
``batches``, ``endless_batches``. Bad data raises ``autoprumux.core.errors.DataError``."""

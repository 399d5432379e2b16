"""A task's text: ``splits.py`` -- ``Split`` (texts and labels as read), ``read_glue_split``,
``read_hub_split``, ``read_unlabelled_text``, ``Encoded`` (token ids on a device), ``encode``,
``batches``, ``endless_batches``. Bad data raises ``autoprumux.core.errors.DataError``."""

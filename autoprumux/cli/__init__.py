"""The ``autoprumux`` command: parsing, what each subcommand does between parsing and
printing, and what it prints."""

"""The HTML report: its data (one pure function per figure or table), where they come from
(a results file or a search's study), and the renderer (plotly)."""

"""Things a person opens: dataset previews now, HTML run reports as the toolkit grows."""

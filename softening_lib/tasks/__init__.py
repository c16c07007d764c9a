"""One module per chapter task (named like the chapter): the science the notebooks call."""

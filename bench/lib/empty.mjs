// A bare `node` start: the baseline of the import row.

"""`deita probe`: inject known-bad records into a pool and measure how much of each class a selection keeps."""

"""Small TF-free helpers shared by every stage (file I/O, images, progress, paths)."""

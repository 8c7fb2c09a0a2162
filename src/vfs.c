/* vfs: placeholder, being written */

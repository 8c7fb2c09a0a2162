/* manifest: placeholder, being written */

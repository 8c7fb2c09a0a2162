/* sigv4: placeholder, being written */

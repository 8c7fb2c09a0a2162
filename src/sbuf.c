/* sbuf: placeholder, being written */

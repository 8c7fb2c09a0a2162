/* delta: placeholder, being written */

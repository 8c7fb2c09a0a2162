/* compactor: placeholder, being written */

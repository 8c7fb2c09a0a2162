/* livedb: placeholder, being written */

/* fsops: placeholder, being written */

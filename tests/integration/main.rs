
mod email;
